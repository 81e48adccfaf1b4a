"""Small adapters the runbooks call: Aurora, Route 53, client endpoints, SQL probes."""
