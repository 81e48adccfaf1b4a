"""The runbook engine: steps, journal, locks, crash hooks, running and exit codes (recovery/engine/runbook.py)."""
