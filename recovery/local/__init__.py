"""The embedded local mode: moto as AWS with the Pulumi program deployed into it, a throwaway PostgreSQL cluster.

Tests and the later `make demo` share these; nothing here is used against a real stack.
"""
