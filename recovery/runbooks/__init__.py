"""Runbooks: ordered steps over the small adapters (catalogue, PostgreSQL, AWS). They never print."""
