"""XAI disaster recovery: runbooks that carry out the DR plan against a Pulumi stack's outputs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("xai-recovery")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
