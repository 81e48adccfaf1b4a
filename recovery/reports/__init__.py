"""Read-only queries and reports: list, status, metrics. They change nothing, so they are not runbooks."""
