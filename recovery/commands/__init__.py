"""Command groups registered on `recovery.cli.main` (one module per group).

Imports: a command imports its runbook, job or report (and rich, botocore, the emulator) inside its
function, so `recovery --help` and a bad option load none of boto3, psycopg or rich (0.6 s instead of
about 2 s). Only light modules (click, errors, knobs, redact, commands.*) are imported at the top.
"""
