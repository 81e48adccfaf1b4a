"""DR drills: scenarios that inject a real disaster, detect it through real checks, recover
with the runbooks, and measure the achieved RTO and RPO against the stack's objectives.

Each module of this package may register scenarios with `recovery.drills.base.scenario`;
`recovery drill full` runs every registered scenario that applies to the stack, in the order
of their `order` value. A new scenario is a new module here: nothing else needs editing.
"""
