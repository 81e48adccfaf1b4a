"""The cutover that ends `restore pitr --cutover` and `restore snapshot --cutover`: clients move to the new cluster.

Steps, after the new cluster's ``report``:

1. ``verify-new``     connect to the new cluster's writer endpoint as the stack's user, with the DB
                      secret's password, and check the ``blockchain`` table: rows present, heights
                      contiguous.
2. ``stop-services``  stop the dependents (``recovery.services``), as `restore db` does.
3. ``repoint``        the DB secret's host/port, the endpoints parameter's db_host/db_port (its cache
                      fields kept), and this host's database service file when the services config
                      names one. The old host/port are journaled, never the password. All or nothing:
                      a failure part-way puts back what this step had already written. First, with
                      the services stopped (nothing writes any more), the max(height) of the database
                      the clients used, when it still answers, gives the blocks the cutover rolls back.
4. ``start-services`` start them again; they now read the new endpoint.

A failure before ``repoint`` completes starts the services this run stopped, against the source,
as they were. The source cluster is still never modified: the cutover only changes where clients go.

Secrets Manager and SSM are regional data-plane calls in the stack's own region; the DB secret may
be a replica, whose writes go through its primary region (adapters/endpoints.py), as in the failover.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import psycopg

from recovery import postgres
from recovery.adapters import endpoints, pg_service_file
from recovery.aws import aws_error
from recovery.engine.journal import Journal
from recovery.engine.steps import Step, StepContext
from recovery.errors import DatabaseError, VerificationFailed, one_line
from recovery.services import ServiceControl
from recovery.stack import StackOutputs

STEPS = ("verify-new", "stop-services", "repoint", "start-services")


@dataclass
class Cutover:
    outputs: StackOutputs
    services: ServiceControl
    new_cluster: str
    endpoint: Callable[[], tuple[str, int]]  # the new cluster's writer endpoint and port, as RDS reports them

    def _conn(self, host: str, port: int, password: str, timeout: int) -> postgres.ConnParams:
        o = self.outputs
        return postgres.ConnParams({"host": host, "port": str(port), "dbname": o.db_name, "user": o.db_username,
                                    "connect_timeout": str(timeout), "application_name": "recovery"}, password)

    def _password(self) -> str:
        return str(endpoints.read_secret_doc(self.outputs).get("password", ""))

    @staticmethod
    def _heights(cp: postgres.ConnParams) -> tuple[int, int | None, int | None]:
        """count, min and max height of ``blockchain``: DatabaseError when the server cannot be reached,
        VerificationFailed when it answers but the table cannot be read (missing, no privilege)."""
        with postgres.connect(cp) as c:
            try:
                row = c.execute("SELECT count(*), min(height), max(height) FROM blockchain").fetchone()
            except psycopg.Error as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise VerificationFailed(f"{cp.target} has no readable blockchain table: {first}",
                                         "restore another point; clients were not repointed") from None
        assert row is not None
        return int(row[0]), row[1], row[2]

    def preflight(self) -> None:
        """Before anything: the host's database service file, when configured, has its section."""
        cfg = self.services.config
        if cfg.database_service_file:
            pg_service_file.read(cfg.database_service_file, cfg.database_service)

    # 1
    def verify_new(self, ctx: StepContext) -> dict[str, Any]:
        host, port = self.endpoint()
        password = self._password()
        try:
            rows, lo, hi = self._heights(self._conn(host, port, password, 10))
        except DatabaseError as exc:
            raise DatabaseError(f"the new cluster {self.new_cluster} does not accept the stack's credentials or "
                                f"connections: {exc.args[0]}",
                                "if the master password was rotated after the recovery point, set the current one: "
                                f"aws rds modify-db-cluster --db-cluster-identifier {self.new_cluster} "
                                "--master-user-password ... (from the DB secret), then rerun") from None
        if rows == 0 or lo is None or hi is None:
            raise VerificationFailed(f"the new cluster {self.new_cluster} has no blockchain rows",
                                     "restore to a later time or another snapshot; clients were not repointed")
        if hi - lo + 1 != rows:
            raise VerificationFailed(f"the new cluster's blockchain heights {lo}..{hi} have gaps ({rows} rows)",
                                     "restore to another point; clients were not repointed")
        return {"cluster": self.new_cluster, "endpoint": f"{host}:{port}", "rows": rows, "min_height": lo,
                "max_height": hi}

    def _loss(self, ctx: StepContext, doc: dict[str, Any]) -> dict[str, Any]:
        """The blocks the clients' database holds beyond the new cluster's (read with the services stopped)."""
        hi = (ctx.results.get("verify-new") or {}).get("max_height")
        try:
            _, _, src_hi = self._heights(self._conn(str(doc.get("host") or self.outputs.db_endpoint),
                                                    int(doc.get("port") or self.outputs.db_port),
                                                    str(doc.get("password", "")), 3))
        except (DatabaseError, VerificationFailed) as exc:  # the source may be what the disaster took: loss unknown
            return {"source": f"unreachable ({exc.args[0][:160]})"}
        lost = None if hi is None or src_hi is None else max(0, src_hi - hi)
        return {"source_max_height": src_hi, "blocks_rolled_back": lost}

    # 3
    def repointed(self, ctx: StepContext) -> bool:
        cfg = self.services.config
        try:
            host, port = self.endpoint()
            doc, param = endpoints.read_secret_doc(self.outputs), endpoints.read_parameter(self.outputs)
            file_ok = cfg.database_service_file is None or pg_service_file.read(
                cfg.database_service_file, cfg.database_service).get("host") == host
        except Exception:  # noqa: BLE001 - no cluster yet, or unreadable: not done (the action reports why)
            return False
        return (doc.get("host") == host and int(doc.get("port") or 0) == port and param.get("db_host") == host
                and int(param.get("db_port") or 0) == port and file_ok)

    def repoint(self, ctx: StepContext) -> dict[str, Any]:
        host, port = self.endpoint()
        o, cfg = self.outputs, self.services.config
        doc = endpoints.read_secret_doc(o)
        param = endpoints.read_parameter(o)
        old_doc, old_param = dict(doc), dict(param)
        loss = self._loss(ctx, doc)
        undo: list[Callable[[], Any]] = []
        try:
            how = endpoints.write_secret_doc(o, {**doc, "host": host, "port": port}, on_primary_down=ctx.info)
            undo.append(lambda: endpoints.write_secret_doc(o, old_doc))
            endpoints.write_parameter(o, {**param, "db_host": host, "db_port": port})
            undo.append(lambda: endpoints.write_parameter(o, old_param))
            service_file = None
            if cfg.database_service_file:
                kept = f"{cfg.database_service_file}.pre-{ctx.run_id}"
                pg_service_file.repoint(cfg.database_service_file, cfg.database_service, host, port, kept)
                service_file = f"{cfg.database_service_file} (previous kept as {kept})"
        except Exception as exc:  # noqa: BLE001 - put back, then report it as one line (exit 5 for AWS)
            for put_back in reversed(undo):
                try:
                    put_back()
                except Exception as again:  # noqa: BLE001 - the first failure is the one reported
                    ctx.info(f"could not put the previous endpoint back: {one_line(again)}")
            raise aws_error(exc, f"repointing the clients to {self.new_cluster}") from None
        if service_file is None:
            ctx.info(f"no database_service_file in {cfg.source}: services configured with a host of their own keep it")
        return {"previous": f"{old_doc.get('host')}:{old_doc.get('port')}", "now": f"{host}:{port}", "db_secret": how,
                "parameter": o.endpoint_parameter_name, "service_file": service_file, **loss}

    def steps(self) -> list[Step]:
        return [
            Step("verify-new", self.verify_new,
                 touches=f"nothing (reads blockchain on {self.new_cluster}, and on the source if it answers)", rerun=True),
            self.services.stop_step(),
            Step("repoint", self.repoint, check=self.repointed,
                 touches=f"DB secret host/port and parameter {self.outputs.endpoint_parameter_name} -> {self.new_cluster}"
                         + (f"; {self.services.config.database_service_file}"
                            if self.services.config.database_service_file else "")),
            self.services.start_step(),
        ]

    def undo(self, journal: Journal) -> None:
        """After a failure: before the repoint completed, the services go back to running on the source."""
        if journal.completed("stop-services") and not journal.completed("repoint"):
            self.services.start_all()


__all__ = ["Cutover", "STEPS"]
