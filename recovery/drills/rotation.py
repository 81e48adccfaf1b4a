"""Drill scenario: scenario 5's credential rotation, on the local environment.

The "disaster" is a presumed leak of every credential. The rotation runbook (`recovery rotate all`,
or `db` when no redis-server backs the cache) runs while the node keeps mining and indexing. The
drill then verifies with real connections:

- the old database password is rejected and the new one (AWSCURRENT) works;
- the node stand-in kept working: its height advanced and it kept indexing into PostgreSQL, with the
  credential the control plane rewrote in its pgpass file;
- the explorer stand-in (a reader that, like the explorer, takes its credential from that pgpass
  file) still reads the latest block.

No secret value is put in the drill record: only outcomes.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg

from recovery.aws import acting_as
from recovery.drills.base import DrillRun, scenario
from recovery.drills.checks import db_health, db_server, wait_for
from recovery.drills.restore_scenarios import TIMEOUT_S, _add_runbook_steps, _node, _reporter, _store
from recovery.errors import IntegrityError
from recovery.runbooks.rotate import CURRENT, PREVIOUS, Rotation, SecretStages, rotate
from recovery.stack import local_dir


def _works(outputs: Any, text: str | None) -> bool:
    if not text:
        return False
    doc = json.loads(text)
    try:
        psycopg.connect(host=doc.get("host") or outputs.db_endpoint, port=doc.get("port") or outputs.db_port,
                        user=doc.get("username") or outputs.db_username, dbname=doc.get("dbname") or outputs.db_name,
                        password=doc["password"], connect_timeout=5).close()
        return True
    except psycopg.OperationalError:
        return False


def _explorer_reads(outputs: Any) -> int:
    """The explorer stand-in: connect with the services' pgpass file (no password of its own)."""
    with psycopg.connect(host=outputs.db_endpoint, port=outputs.db_port, user=outputs.db_username,
                         dbname=outputs.db_name, passfile=str(local_dir() / "pgpass"), connect_timeout=5) as c:
        row = c.execute("SELECT max(height) FROM blockchain").fetchone()
    return int(row[0]) if row and row[0] is not None else -1


@scenario("credential-rotation", component="postgresql", order=50,
          description="every credential presumed leaked (scenario 5); rotated with the rotate runbook while the "
                      "node keeps mining; the old database password must be rejected afterwards")
def credential_rotation(d: DrillRun) -> None:
    o = d.outputs
    stages = SecretStages(Rotation(o, "db", 0.0).sm, o.db_secret_arn)
    server = db_server(o)
    db = server.cp.params.get("dbname") or o.db_name

    with d.step("preflight") as st:
        old = stages.value(CURRENT)
        if not _works(o, old):
            raise IntegrityError("the database secret's AWSCURRENT does not work before the drill",
                                 "rerun `recovery rotate db --stack local --yes` to finish a half-done rotation")
        with _node(d) as node:
            height0 = node.block_height()
        rows0 = db_health(server, db)["rows"]
        st.detail.update(node_height=height0, rows=rows0, explorer_height=_explorer_reads(o))
    what = "all" if Rotation(o, "cache", 0.0).cache_target() is not None else "db"
    if what == "db":
        d.extra["note"] = "cache not rotated: redis-server is not installed, the local cache group is not backed"
    d.injected()
    d.detected("credentials presumed compromised (scenario 5: security breach)")

    with d.step("rotate") as st:
        with acting_as(o, "rotate"):
            journal, _ = rotate(o, what, _store(d), grace_s=0.0, yes=True, reporter=_reporter(d))
        assert journal is not None
        st.detail.update(runbook=journal.runbook, run_id=journal.run_id, status=journal.status)
    _add_runbook_steps(d, journal, "rotate")

    with d.step("verify") as st:
        server = db_server(o)  # resolved again: the credential it read before is the rotated one
        new = stages.value(CURRENT)
        previous = stages.value(PREVIOUS)
        if new == old or previous != old:
            raise IntegrityError("the database secret was not rotated (AWSCURRENT unchanged)", "see the rotate journal")
        if _works(o, old):
            raise IntegrityError("the old database password still works after the rotation", "see the rotate journal")
        if not _works(o, new):
            raise IntegrityError("the new database password (AWSCURRENT) does not work", "see the rotate journal")
        with _node(d) as node:
            height = wait_for("the node mining after the rotation",
                              lambda: (h if (h := node.block_height()) > height0 else None), TIMEOUT_S)
        rows = wait_for("the node indexing into PostgreSQL after the rotation",
                        lambda: (r if (r := db_health(server, db)["rows"]) > rows0 else None), TIMEOUT_S)
        explorer = _explorer_reads(o)
        st.detail.update(old_rejected=True, new_works=True, node_height=height, rows=rows, explorer_height=explorer)
    d.recovered()
    d.lost(blocks=0, seconds=0.0)  # rotation loses no data: the node kept indexing throughout
