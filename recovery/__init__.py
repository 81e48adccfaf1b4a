"""XAI disaster recovery: runbooks that carry out the DR plan against a Pulumi stack's outputs."""

# The package's version (pyproject.toml reads it from here); written into every manifest and report.
__version__ = "0.1.0"
