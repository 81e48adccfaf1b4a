"""`drill full` scenario for the DR plan's scenario 5 (security breach), local only.

It imports recovery.local on purpose: planting a compromise needs the emulated account's root
credentials (recovery/local/breach.py), which only the local environment hands out.

security-breach (component postgresql: the credential whose rotation ends the outage)
    plant        an IAM user the stack does not trust gets an access key and an instance in the
                 stack's VPC, and uses the key against the emulator (CloudTrail records each call)
    detect       CloudTrail, as the contain role: long-term-key calls by a user outside the
                 stack's `trusted_principal_arns` (`contain.suspect_keys`)
    contain      the contain runbook on the instance and that user (quarantine group on every
                 interface, image and snapshots, keys deactivated, trail logging), its own journal
    rotate       the rotate runbook (all, or db without redis-server), its own journal
    investigate  the user's and instance's CloudTrail events into the incident record; report
    verify       the rogue key is refused, the investigation found its calls, the database secret
                 changed and the old password is refused
    RPO          none: containment loses no data (0 blocks, 0 s)

The rogue key's secret never leaves recovery/local/breach.py; the record holds its key id only.
"""

from __future__ import annotations

import time

from recovery.aws import acting_as
from recovery.drills.base import DrillRun, scenario
from recovery.drills.restore_scenarios import _add_runbook_steps, _reporter, _store
from recovery.drills.rotation import _works
from recovery.errors import IntegrityError, VerificationFailed
from recovery.local import breach
from recovery.runbooks.contain import ContainOptions, contain, investigate, suspect_keys
from recovery.runbooks.rotate import CURRENT, Rotation, SecretStages, rotate


@scenario("security-breach", component="postgresql", order=60,
          description="a rogue access key used against AWS (scenario 5); found in CloudTrail, then contained, "
                      "every credential rotated, investigated and reported")
def security_breach(d: DrillRun) -> None:
    o = d.outputs
    started = time.time()
    tag = time.strftime("%Y%m%d%H%M%S", time.gmtime(started))
    incident = f"drill-{tag}"
    stages = SecretStages(Rotation(o, "db", 0.0).sm, o.db_secret_arn)

    with d.step("plant") as st:
        c = breach.plant(o, tag)
        d.cleanup(lambda: breach.remove(c, o))
        st.detail.update(user=c.user, access_key_id=c.access_key_id, instance=c.instance_id,
                         calls_answered=breach.use_key(c, o))
        old = stages.value(CURRENT)
    d.injected()

    with d.step("detect") as st:
        with acting_as(o, "contain"):
            found = suspect_keys(o, since_s=time.time() - started + 60)
        if c.user not in found:
            raise VerificationFailed(f"CloudTrail shows no call by {c.user}'s key: the breach went unseen",
                                     "check that the trail records management events")
        st.detail.update(suspects=found)
        d.detected(f"CloudTrail: untrusted user {c.user} called AWS {found[c.user]['calls']} time(s) with "
                   f"long-term key {c.access_key_id}")

    with d.step("contain") as st:
        with acting_as(o, "contain"):
            journal, _ = contain(o, ContainOptions(c.instance_id, users=[c.user], incident_id=incident),
                                 _store(d), yes=True, reporter=_reporter(d))
        assert journal is not None
        st.detail.update(runbook=journal.runbook, run_id=journal.run_id, status=journal.status)
    _add_runbook_steps(d, journal, "contain")

    with d.step("rotate") as st:
        what = "all" if Rotation(o, "cache", 0.0).cache_target() is not None else "db"
        with acting_as(o, "rotate"):
            journal, _ = rotate(o, what, _store(d), grace_s=0.0, yes=True, reporter=_reporter(d))
        assert journal is not None
        st.detail.update(runbook=journal.runbook, run_id=journal.run_id, status=journal.status, what=what)
    _add_runbook_steps(d, journal, "rotate")

    with d.step("investigate") as st:
        with acting_as(o, "contain"):
            result = investigate(o, incident, time.time() - started + 60)
        st.detail.update(result)

    with d.step("verify") as st:
        if breach.key_works(c, o):
            raise IntegrityError(f"{c.user}'s access key still works after containment", "see the contain journal")
        new = stages.value(CURRENT)
        if new == old or _works(o, old) or not _works(o, new):
            raise IntegrityError("the database credential was not rotated after the breach", "see the rotate journal")
        if result.get("events", 0) < 1:
            raise VerificationFailed("the investigation found none of the rogue key's calls", "see the incident record")
        st.detail.update(rogue_key_refused=True, old_password_refused=True, report=result.get("report_md"))
    d.recovered()
    d.lost(blocks=0, seconds=0.0)  # containment and rotation lose no data
