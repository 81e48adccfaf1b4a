"""The `recovery` command line. Thin on purpose: parse options, call a runbook, render, map errors."""

from __future__ import annotations

import click

from recovery import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="recovery")
def main() -> None:
    """Carry out the XAI disaster recovery plan against a Pulumi stack's outputs."""
