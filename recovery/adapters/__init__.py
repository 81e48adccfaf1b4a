"""Adapters: the AWS and service calls that runbooks make, one module per service."""
