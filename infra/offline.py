"""Run this Pulumi program with no engine, no plugins and no cloud: under Pulumi's mocks.

Used by the tests (every property asserted on what the program really registers), by the
policy tests (rules run over every registered resource) and by `scripts/plan`, the offline
plan a reviewer reads in a pull request. The mocks return what AWS would compute (ARNs,
endpoints, IDs) in a deterministic form, so the plan is stable from run to run.

The DR stack reads the primary stack through a StackReference. Here that reference is
answered with the outputs the primary program itself produces, so the two stacks are
checked against each other, not against a hand-written fixture.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

INFRA = Path(__file__).resolve().parent
ROOT = INFRA.parent
ACCOUNT = "123456789012"
SECRET_SIG = "4dabf18193072939515e22adb298388d"

if str(INFRA) not in sys.path:
    sys.path.insert(0, str(INFRA))


@dataclass
class Registered:
    type: str
    name: str
    inputs: dict[str, Any]
    region: str
    provider: str | None
    urn: str = ""
    id: str = ""  # the physical ID the mocks returned (what `.id` of the resource resolves to)
    ignore_changes: list[str] = field(default_factory=list)
    protect: bool = False
    outputs: dict[str, Any] = field(default_factory=dict)
    account: str = ACCOUNT  # another account's, when its provider is pinned there (allowedAccountIds)


@dataclass
class StackRun:
    stack: str
    project: str
    config: dict[str, Any]
    resources: list[Registered]
    outputs: dict[str, Any]

    def of_type(self, type_: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> Registered:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        if len(found) != 1:
            raise LookupError(f"expected one {type_} {name or ''}, found {[r.name for r in found]}")
        return found[0]


def project_name() -> str:
    return str(yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["name"])


def stack_config(stack: str) -> dict[str, Any]:
    path = ROOT / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no stack config {path.name}")
    return dict((yaml.safe_load(path.read_text()) or {}).get("config") or {})


def unwrap_secrets(value: Any) -> Any:
    """Secrets reach the mocks wrapped in a dict keyed by Pulumi's secret signature."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270":
            return unwrap_secrets(value.get("value"))
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v) for v in value]
    return value


def _digest(*parts: str, n: int = 12) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:n]


def _mocks(default_region: str, stack_refs: dict[str, dict[str, Any]], sink: list[Registered]) -> Any:
    import pulumi

    provider_regions: dict[str, str] = {}
    provider_accounts: dict[str, str] = {}

    class AwsMocks(pulumi.runtime.Mocks):
        def call(self, args: pulumi.runtime.MockCallArgs) -> Any:
            if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
                return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:root", "userId": ACCOUNT, "id": ACCOUNT}
            return {}

        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> Any:
            inputs = unwrap_secrets(dict(args.inputs))
            if args.typ == "pulumi:pulumi:StackReference":
                name = inputs.get("name", args.name)
                outputs = stack_refs.get(name)
                if outputs is None:
                    raise KeyError(f"StackReference to unknown stack {name!r}")
                return [name, {"name": name, "outputs": outputs, "secretOutputNames": []}]
            if args.typ.startswith("pulumi:providers:aws"):
                provider_regions[args.name] = inputs.get("region", default_region)
                accounts = json.loads(inputs["allowedAccountIds"]) if isinstance(inputs.get("allowedAccountIds"), str) \
                    else inputs.get("allowedAccountIds") or []
                if len(accounts) == 1:  # a provider pinned to one account creates its resources there
                    provider_accounts[args.name] = str(accounts[0])
                return [f"{args.name}-provider", inputs]
            region, account = default_region, ACCOUNT
            if args.provider:
                # "<urn>::<id>"; the urn ends with "::<provider name>"
                prov_name = args.provider.split("::")[-2]
                region = provider_regions.get(prov_name, default_region)
                account = provider_accounts.get(prov_name, ACCOUNT)
            rid, state = computed(args.typ, args.name, inputs, region, account)
            sink.append(Registered(args.typ, args.name, inputs, region, args.provider, id=rid, outputs=state,
                                   account=account))
            return [rid, state]

    return AwsMocks()


def computed(typ: str, name: str, inputs: dict[str, Any], region: str,
             account: str = ACCOUNT) -> tuple[str, dict[str, Any]]:
    """What AWS would return: ID plus computed attributes, deterministic per resource (in `account`)."""
    s = dict(inputs)
    name = f"{region}/{name}"  # IDs differ per site, as they do in AWS
    rid = f"{name.split('/')[1]}-{_digest(typ, name, n=8)}"
    if typ == "aws:kms/key:Key":
        rid = f"{_digest(name, n=8)}-{_digest(name, 'k', n=4)}-4{_digest(name, 'e', n=3)}-8{_digest(name, 'f', n=3)}-{_digest(name, 'g')}"
        s.update(keyId=rid, arn=f"arn:aws:kms:{region}:{account}:key/{rid}")
    elif typ == "aws:s3/bucket:Bucket":
        rid = inputs["bucket"]
        s.update(arn=f"arn:aws:s3:::{rid}", bucketRegionalDomainName=f"{rid}.s3.{region}.amazonaws.com", region=region)
    elif typ == "aws:rds/globalCluster:GlobalCluster":
        rid = inputs["globalClusterIdentifier"]
        s.update(arn=f"arn:aws:rds::{account}:global-cluster:{rid}")
    elif typ == "aws:rds/cluster:Cluster":
        rid = inputs["clusterIdentifier"]
        host = f"{rid}.cluster-{_digest(rid, n=12)}.{region}.rds.amazonaws.com"
        s.update(arn=f"arn:aws:rds:{region}:{account}:cluster:{rid}", endpoint=host,
                 readerEndpoint=host.replace(".cluster-", ".cluster-ro-"))
    elif typ == "aws:rds/clusterInstance:ClusterInstance":
        rid = inputs["identifier"]
        s.update(arn=f"arn:aws:rds:{region}:{account}:db:{rid}")
    elif typ in ("aws:rds/subnetGroup:SubnetGroup", "aws:elasticache/subnetGroup:SubnetGroup"):
        rid = inputs["name"]
    elif typ == "aws:elasticache/replicationGroup:ReplicationGroup":
        rid = inputs["replicationGroupId"]
        s.update(arn=f"arn:aws:elasticache:{region}:{account}:replicationgroup:{rid}",
                 primaryEndpointAddress=f"master.{rid}.{_digest(rid, n=6)}.{region[:2]}{region.split('-')[1][0]}{region[-1]}.cache.amazonaws.com")
    elif typ == "aws:secretsmanager/secret:Secret":
        rid = f"arn:aws:secretsmanager:{region}:{account}:secret:{inputs['name']}-{_digest(inputs['name'], n=6)}"
        s.update(arn=rid)
    elif typ == "aws:route53/healthCheck:HealthCheck":
        rid = f"{_digest(name, n=8)}-{_digest(name, 'a', n=4)}-{_digest(name, 'b', n=4)}-{_digest(name, 'c', n=4)}-{_digest(name, 'd')}"
        s.update(arn=f"arn:aws:route53:::healthcheck/{rid}")
    elif typ == "aws:cloudwatch/metricAlarm:MetricAlarm":
        rid = inputs["name"]
        s.update(arn=f"arn:aws:cloudwatch:{region}:{account}:alarm:{rid}")
    elif typ == "aws:iam/role:Role":
        rid = inputs.get("name") or f"{name.split('/')[1]}-{_digest(name, n=7)}"
        s.update(name=rid, arn=f"arn:aws:iam::{account}:role/{rid}")
    elif typ == "aws:ssm/parameter:Parameter":
        rid = inputs["name"]
        s.update(arn=f"arn:aws:ssm:{region}:{account}:parameter/{rid.lstrip('/')}")
    elif typ == "aws:backup/vault:Vault":
        rid = inputs["name"]
        s.update(arn=f"arn:aws:backup:{region}:{account}:backup-vault:{rid}")
    elif typ == "aws:backup/plan:Plan":
        rid = f"{_digest(name, n=8)}-{_digest(name, 'p', n=4)}-4{_digest(name, 'q', n=3)}-8{_digest(name, 'r', n=3)}-{_digest(name, 's')}"
        s.update(arn=f"arn:aws:backup:{region}:{account}:backup-plan:{rid}", version=_digest(name, "v", n=48))
    elif typ == "aws:backup/vaultLockConfiguration:VaultLockConfiguration":
        rid = inputs["backupVaultName"]
        s.update(backupVaultArn=f"arn:aws:backup:{region}:{account}:backup-vault:{rid}")
    elif typ == "random:index/randomPassword:RandomPassword":
        s.update(result=f"mock-{_digest(name, n=16)}")
    s.setdefault("arn", f"arn:aws:mock:{region}:{account}:{rid}")
    return rid, s


def _set_config(project: str, config: dict[str, Any]) -> None:
    import pulumi.runtime

    flat = {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
    # set_all_config takes "project:key" names, as the engine passes them.
    pulumi.runtime.set_all_config(flat, [])
    del project


def _run(stack: str, config: dict[str, Any], stack_refs: dict[str, dict[str, Any]]) -> StackRun:
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pulumi_aws.*")
    import pulumi
    from pulumi.runtime.settings import SETTINGS
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    import runpy

    project = project_name()
    sink: list[Registered] = []
    region = str(config.get("aws:region", ""))
    monitor = pulumi.runtime.mocks.MockMonitor(_mocks(region or "us-east-1", stack_refs, sink))
    pulumi.runtime.set_mocks(monitor.mocks, project=project, stack=stack, preview=False, monitor=monitor)
    _set_config(project, config)
    SETTINGS.rpc_manager.clear()
    SETTINGS.outputs.clear()

    resolved: dict[str, Any] = {}
    options: dict[str, pulumi.ResourceOptions] = {}

    def record_options(args: pulumi.ResourceTransformationArgs) -> None:
        # Resource options never reach the mocks; a stack transformation sees them.
        options[args.name] = args.opts

    def program() -> Any:
        pulumi.runtime.register_stack_transformation(record_options)
        # Run the real entry point, exactly as `pulumi up` does, then read what it exported.
        runpy.run_path(str(INFRA / "__main__.py"), run_name="__main__")
        root = pulumi.runtime.get_root_resource()
        outputs = dict(root.outputs) if root is not None else {}  # type: ignore[attr-defined]
        return pulumi.Output.all(**outputs).apply(resolved.update)

    _sync_await(run_pulumi_func(lambda: _sync_await(pulumi.Output.from_input(program()).future())))
    by_name = {urn.rsplit("::", 1)[-1]: urn for urn in monitor.get_registered_resources()}
    for r in sink:
        r.urn = by_name.get(r.name, "")
        opts = options.get(r.name)
        if opts is not None:
            r.ignore_changes = sorted(opts.ignore_changes or [])
            r.protect = bool(opts.protect)
    return StackRun(stack, project, config, sink, unwrap_secrets(resolved))


def run_stack(stack: str, config: dict[str, Any] | None = None, *, primary: StackRun | None = None) -> StackRun:
    """Run the program for `stack` under mocks and return what it registered and exported.

    `config` defaults to Pulumi.<stack>.yaml. A DR stack's primary is run first (or given),
    and its outputs answer the StackReference.
    """
    config = stack_config(stack) if config is None else config
    refs: dict[str, dict[str, Any]] = {}
    if config.get(f"{project_name()}:role") == "dr":
        peer = str(config[f"{project_name()}:peerStack"])
        if primary is None:
            primary = run_stack(peer.rsplit("/", 1)[-1])
        refs[peer] = primary.outputs
    # Each run gets a fresh context: Pulumi keeps the root stack resource in a ContextVar.
    return contextvars.Context().run(_run, stack, config, refs)
