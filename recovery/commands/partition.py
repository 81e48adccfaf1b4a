"""`recovery partition wait|rejoin`: the DR plan's scenario 4 (network partition).

Exit codes: 0 healed; 34 not healed before --timeout (with a summary); 4 a bad --peers list
(nothing was sent); 12 the node API failed; 13 rejoined but consensus_state is not 'synced'.
"""

from __future__ import annotations

from typing import Any

import click

from recovery.commands.common import (console_reporter, emit_json, finish_runbook, journal_store_for, out,
                                      outputs_for, stack_options)
from recovery.commands.params import DURATION, URL


def _node_url(outputs: Any, given: str | None) -> str:
    return given or str(outputs.node_api_url)


def _common(f: Any) -> Any:
    f = click.option("--interval", type=DURATION, default="10s", show_default=True, help="Seconds between polls.")(f)
    f = click.option("--timeout", type=DURATION, default="15m", show_default=True, help="Give up after this long (exit 34).")(f)
    f = click.option("--min-peers", type=click.IntRange(min=1), default=5, show_default=True,
                     help="Healed means synced with at least this many peers.")(f)
    f = click.option("--node-url", type=URL, help="The node's API [default: the stack's node_api_url].")(f)
    return stack_options(f)


@click.group()
def partition() -> None:
    """Network partition (scenario 4): wait for healing, or rejoin the largest partition."""


@partition.command("wait")
@_common
def wait_cmd(stack: str, outputs_file: str | None, as_json: bool, node_url: str | None, min_peers: int,
             timeout: float, interval: float) -> None:
    """Poll peer count and sync state until healed (exit 0) or --timeout (exit 34)."""
    from recovery.node import NodeClient
    from recovery.runbooks.partition import wait_healed

    outputs = outputs_for(stack, outputs_file, "failover")
    url = _node_url(outputs, node_url)
    with NodeClient(url, timeout_s=5, retries=1) as node:
        last = wait_healed(node, min_peers=min_peers, timeout_s=timeout, interval_s=interval,
                           progress=lambda p: click.echo(f"partition wait: {p.line()}", err=True))
    if as_json:
        emit_json({"ok": True, "healed": True, "node": url, "peers": last.peers, "synced": last.synced,
                   "consensus_state": last.consensus_state, "height": last.height, "waited_s": round(last.elapsed_s, 1)})
    else:
        out(f"network healed: {last.peers} peers, synced, consensus {last.consensus_state}, height {last.height} "
            f"(waited {last.elapsed_s:.0f}s)")


@partition.command("rejoin")
@_common
@click.option("--peers", required=True, help="Peers of the largest partition: HOST:PORT,HOST:PORT,...")
@click.option("--dry-run", is_flag=True, help="Validate the peer list and show the plan; send nothing.")
def rejoin_cmd(stack: str, outputs_file: str | None, as_json: bool, node_url: str | None, min_peers: int,
               timeout: float, interval: float, peers: str, dry_run: bool) -> None:
    """Validate the peer list, POST the node's rejoin, wait until healed, check consensus_state."""
    from recovery.runbooks.partition import RejoinOptions, parse_peers, rejoin

    peer_list = parse_peers(peers)  # before anything else: a bad list never reaches the node
    outputs = outputs_for(stack, outputs_file, "failover")
    opts = RejoinOptions(peers=peer_list, node_url=_node_url(outputs, node_url), min_peers=min_peers,
                         timeout_s=timeout, interval_s=interval)
    reporter = console_reporter()
    store = journal_store_for(outputs, reporter)
    finish_runbook(lambda: rejoin(stack, opts, store, dry_run=dry_run, reporter=reporter), as_json)
