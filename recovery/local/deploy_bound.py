"""The program deployed into a test's (or the bench's) emulator, bound to a PostgreSQL it already runs.

`local up` deploys with `deploy.deploy` and starts its own clusters; tests and the bench bring their
database and want the site fast, once per test: `deploy_for_tests` replays the program the first
time per process and arguments, and restores the captured state after that.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from recovery.local.deploy import DR, PRIMARY, Deployed, admin_client, deploy, generated_secret
from recovery.local.oncall import Oncall

if TYPE_CHECKING:
    from recovery.local.moto_server import MotoServer


def site_for_tests(server: "MotoServer", *, role: str = "primary", **database: Any) -> tuple[dict[str, Any], Oncall]:
    """One local site's outputs (a DR site comes with its primary) and the on-call identity (`deploy_for_tests`)."""
    stacks = (PRIMARY,) if role == "primary" else (PRIMARY, DR)
    deployed = deploy_for_tests(server, stacks=stacks, **database)
    return deployed.outputs[stacks[-1]], deployed.oncall


def deploy_for_tests(server: "MotoServer", **kwargs: Any) -> Deployed:
    """`server` reset, then `deploy_with_database(**kwargs)` into it.

    The deployment is replayed once per process and arguments, and restored from its captured state after
    that (`MotoServer.reset_to`): the same resources, 10-50x faster. The key holds every argument and whether
    the emulator's extensions are installed (they take part in what a deployment leaves behind)."""
    from recovery.local import emulator

    key = json.dumps({**kwargs, "extensions": emulator.installed()}, sort_keys=True)
    return server.reset_to(key, lambda: deploy_with_database(server.endpoint, server.ca_bundle, **kwargs))


def deploy_with_database(endpoint: str, ca_bundle: str | None, *, stacks: tuple[str, ...] = (PRIMARY, DR),
                         db_host: str = "127.0.0.1", db_port: int = 5432, db_name: str = "xai_blockchain",
                         db_user: str = "xaiadmin", db_password: str | None = None) -> Deployed:
    """The local stacks deployed from the program, bound to a database a test (or bench) already runs. The
    DB secret is the program's; its value is set to that database's real credential, as an operator
    adopting an existing cluster would (the DR site's copy is its replica)."""
    database = {"port": db_port, "databaseName": db_name, "masterUsername": db_user}
    deployed = deploy(endpoint, ca_bundle=ca_bundle, databases={PRIMARY: database, DR: database},
                      bindings={s: {"db_endpoint": db_host} for s in (PRIMARY, DR)}, stacks=stacks)
    if db_password is not None:
        arn = deployed.outputs[PRIMARY]["db_secret_arn"]
        doc = json.loads(generated_secret(arn, endpoint, ca_bundle))
        doc["password"] = db_password
        sm = admin_client("secretsmanager", arn.split(":")[3], endpoint, ca_bundle)
        sm.put_secret_value(SecretId=arn, SecretString=json.dumps(doc, sort_keys=True))
    return deployed
