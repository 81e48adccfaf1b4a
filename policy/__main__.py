"""Entry point of the CrossGuard policy pack: `pulumi preview --policy-pack policy`.

Kept thin on purpose: constructing `PolicyPack` starts the analyzer's gRPC server and blocks, so
tests import `fsbp_rules` (the rules) and never this module.
"""

import os
import sys

from pulumi_policy import PolicyPack

# Pulumi runs this file with the pack directory on sys.path; make that explicit so the pack also
# works when started another way.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fsbp_rules as rules  # noqa: E402

PolicyPack(
    name=rules.PACK_NAME,
    enforcement_level=rules.PACK_ENFORCEMENT,
    policies=rules.ALL_POLICIES,
    description="AWS Foundational Security Best Practices and DR requirements for the XAI DR platform.",
)
