"""Taking, copying off-site, verifying and reading back backups: the catalogue's jobs (not runbooks)."""
