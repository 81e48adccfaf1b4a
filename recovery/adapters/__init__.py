"""Small adapters the runbooks call, one module per thing they talk to: Aurora, Route 53, client endpoints, SQL probes, EC2/IAM containment, Secrets Manager."""
