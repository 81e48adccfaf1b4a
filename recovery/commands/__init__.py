"""Command groups registered on `recovery.cli.main` (one module per group)."""
