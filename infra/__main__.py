"""Pulumi entry point: read the typed stack config and build the primary or the DR site."""

import sites
import stack_config

sites.export(sites.build(stack_config.from_pulumi()))
