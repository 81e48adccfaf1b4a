"""The embedded local mode: moto as AWS, a throwaway PostgreSQL cluster, a sandbox stack's outputs.

Tests and the later `make demo` share these; nothing here is used against a real stack.
"""
