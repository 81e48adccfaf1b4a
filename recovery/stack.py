"""A stack's outputs, typed, from whichever source applies first.

Sources, in order (the first that applies wins):

1. ``--outputs FILE``: the JSON of ``pulumi stack output --json`` (a flat object) or of
   ``pulumi stack export`` (a deployment; the outputs sit on the ``pulumi:pulumi:Stack`` resource).
2. The state file of a self-managed backend named by ``PULUMI_BACKEND_URL`` (``file://`` or
   ``s3://``), read directly: ``.pulumi/stacks/<project>/<stack>.json[.gz]`` or the legacy
   ``.pulumi/stacks/<stack>.json[.gz]``. It is what the Pulumi CLI would read there, and with
   nothing but this tool and AWS credentials an operator can still find the backup bucket. The
   local environment's stacks (``local``, ``local-dr``) default to its own file backend.
3. The Pulumi CLI, when ``pulumi`` is on PATH: ``pulumi stack output --json --stack NAME`` (the
   Pulumi Cloud backend, or any other the CLI is logged in to).

The names and types are the contract in the README's "Stack outputs". Anything missing, mistyped or
secret-only raises StackOutputsError naming the output and the stack.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import os
import shutil
import subprocess
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

from recovery.errors import LocalEnvError, StackOutputsError
from recovery.files import read_regular_file

# Pulumi marks secret values in state and exports with this signature key.
SECRET_SIG = "4dabf18193072939515e22adb298388d"
STACK_RESOURCE_TYPE = "pulumi:pulumi:Stack"
LOCAL_STACKS = ("local", "local-dr")
# Where `recovery local up` keeps the embedded stacks' self-managed backend (RECOVERY_LOCAL_DIR moves
# it); for those two stack names it is the default source, as PULUMI_BACKEND_URL is for others.
LOCAL_DIR_ENV = "RECOVERY_LOCAL_DIR"
DEFAULT_LOCAL_DIR = ".recovery/local"


def local_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The local environment's directory: `path`, else $RECOVERY_LOCAL_DIR, else .recovery/local."""
    return Path(path or os.environ.get(LOCAL_DIR_ENV) or DEFAULT_LOCAL_DIR).absolute()


def local_backend_url(path: str | os.PathLike[str] | None = None) -> str:
    return f"file://{local_dir(path) / 'backend'}"


@dataclass(frozen=True)
class StackOutputs:
    """Every output of the README's contract, typed. DR-only outputs are None on a primary."""

    stack: str
    role: str
    production: bool
    region: str
    peer_stack: str
    backup_bucket_name: str
    backup_bucket_arn: str
    backup_kms_key_arn: str
    backup_retention_days: int
    offsite_retention_days: int
    backup_interval_minutes: dict[str, int]
    global_cluster_id: str
    db_cluster_id: str
    db_cluster_arn: str
    db_endpoint: str
    db_reader_endpoint: str
    db_port: int
    db_name: str
    db_username: str
    db_secret_arn: str
    db_instance_ids: list[str]
    cache_replication_group_id: str
    cache_endpoint: str
    cache_port: int
    cache_secret_arn: str
    # issue 15: the group as the program declares it (CreateReplicationGroup's names), for `cache recreate`
    cache_settings: dict[str, Any]
    app_secret_arns: list[str]
    dns_zone_id: str
    dns_record_name: str
    health_check_id: str
    node_api_url: str
    node_api_fqdn: str
    # How traffic moves between the sites without Route 53's API (infra/traffic_control.py): the
    # flag alarm in the DR region that the PRIMARY record's health check follows.
    traffic_control: dict[str, Any]
    vpc_id: str
    trail_name: str
    endpoint_parameter_name: str
    recovery_role_arns: dict[str, str]
    objectives: dict[str, Any]
    # The DR-events topic and webhooks (infra/notifications.py, recovery/notify.py).
    notifications: dict[str, Any]
    # issue 16: the AWS Backup plan of the Aurora cluster (infra/aurora_backup.py), its vault, AWS Backup's
    # service role (StartRestoreJob's IamRoleArn) and the Vault-Locked vault in the backup account.
    backup_vault_name: str
    backup_vault_arn: str
    backup_plan_id: str
    backup_role_arn: str
    backup_account_id: str
    backup_account_vault_name: str
    backup_account_vault_arn: str
    replication_source_bucket_name: str | None = None
    trusted_principal_arns: list[str] = field(default_factory=list)
    replication_role_arn: str | None = None
    # Only the local environment's stacks carry these (recovery/local/deploy.py LOCAL_BINDINGS):
    # `local` says so explicitly, and the aws_* outputs say where its AWS API is and which
    # credentials reach it (recovery/aws.py uses them; nothing rewrites the environment).
    node_data_dir: str | None = None
    services_config: str | None = None
    local: bool = False
    aws_endpoint_url: str | None = None
    aws_ca_bundle: str | None = None
    aws_credentials_file: str | None = None
    aws_profile: str | None = None
    # The emulator's DNS server (the Route 53 data plane), "127.0.0.1:PORT"; in AWS the zone's
    # authoritative name servers are asked instead.
    dns_server: str | None = None
    source: str = field(default="", compare=False)

    def interval_minutes(self, kind: str) -> int | None:
        """Backup interval for a catalogue kind (db -> database, chain -> chain), None if unscheduled."""
        key = {"db": "database", "chain": "chain"}.get(kind, kind)
        value = self.backup_interval_minutes.get(key)
        return int(value) if value is not None else None

    def objective_s(self, component: str, which: str) -> float | None:
        """The component's RTO or RPO objective (``which`` = "rto" | "rpo") in seconds, None if unset."""
        v = ((self.objectives or {}).get(component) or {}).get(f"{which}_minutes")
        return float(v) * 60 if isinstance(v, (int, float)) and not isinstance(v, bool) else None


# name -> (python type, required for every role). Types follow `pulumi stack output --json`.
_SPEC: dict[str, tuple[str, bool]] = {
    "role": ("str", True),
    "production": ("bool", True),
    "region": ("str", True),
    "peer_stack": ("str", True),
    "backup_bucket_name": ("str", True),
    "backup_bucket_arn": ("str", True),
    "backup_kms_key_arn": ("str", True),
    "backup_retention_days": ("int", True),
    "offsite_retention_days": ("int", True),
    "backup_interval_minutes": ("object", True),
    "global_cluster_id": ("str", True),
    "db_cluster_id": ("str", True),
    "db_cluster_arn": ("str", True),
    "db_endpoint": ("str", True),
    "db_reader_endpoint": ("str", True),
    "db_port": ("int", True),
    "db_name": ("str", True),
    "db_username": ("str", True),
    "db_secret_arn": ("str", True),
    "db_instance_ids": ("list[str]", True),
    "cache_replication_group_id": ("str", True),
    "cache_endpoint": ("str", True),
    "cache_port": ("int", True),
    "cache_secret_arn": ("str", True),
    "cache_settings": ("object", True),
    "app_secret_arns": ("list[str]", True),
    "dns_zone_id": ("str", True),
    "dns_record_name": ("str", True),
    "health_check_id": ("str", True),
    "node_api_url": ("str", True),
    "node_api_fqdn": ("str", True),
    "traffic_control": ("object", True),
    "vpc_id": ("str", True),
    "trail_name": ("str", True),
    "endpoint_parameter_name": ("str", True),
    "recovery_role_arns": ("object", True),
    "objectives": ("object", True),
    "notifications": ("object", True),
    "backup_vault_name": ("str", True),
    "backup_vault_arn": ("str", True),
    "backup_plan_id": ("str", True),
    "backup_role_arn": ("str", True),
    "backup_account_id": ("str", True),
    "backup_account_vault_name": ("str", True),
    "backup_account_vault_arn": ("str", True),
    "replication_source_bucket_name": ("str", False),
    "trusted_principal_arns": ("list[str]", True),
    "replication_role_arn": ("str", False),
    "node_data_dir": ("str", False),
    "services_config": ("str", False),
    "local": ("bool", False),
    "aws_endpoint_url": ("str", False),
    "aws_ca_bundle": ("str", False),
    "aws_credentials_file": ("str", False),
    "aws_profile": ("str", False),
    "dns_server": ("str", False),
}

# Whole-number outputs whose range is narrower than a 32-bit int (which bounds the others).
_INT_RANGES: dict[str, tuple[int, int]] = {
    "db_port": (1, 65535),
    "cache_port": (1, 65535),
    "backup_retention_days": (1, 36500),
    "offsite_retention_days": (1, 36500),
}
MAX_INTERVAL_MINUTES = 366 * 24 * 60  # a backup schedule longer than a year is a typo

REQUIRED_OUTPUTS: frozenset[str] = frozenset(n for n, (_, req) in _SPEC.items() if req)
LOCAL_ONLY_OUTPUTS: frozenset[str] = frozenset({"node_data_dir", "services_config", "local", "aws_endpoint_url",
                                                 "aws_ca_bundle", "aws_credentials_file", "aws_profile",
                                                 "dns_server"})
DR_ONLY_OUTPUTS: frozenset[str] = frozenset(n for n, (_, req) in _SPEC.items() if not req) - LOCAL_ONLY_OUTPUTS


def _is_secret(value: Any) -> bool:
    return value == "[secret]" or (isinstance(value, dict) and SECRET_SIG in value)


def _coerce(stack: str, name: str, kind: str, value: Any) -> Any:
    def bad(expected: str) -> StackOutputsError:
        return StackOutputsError(
            f"stack '{stack}' output '{name}' should be {expected}, got {type(value).__name__}",
            "fix the infra program's export or the outputs file",
        )

    if _is_secret(value):
        raise StackOutputsError(
            f"stack '{stack}' output '{name}' is a secret and its value is not readable here",
            "export it as a plain output; recovery reads secret values from Secrets Manager only",
        )
    if kind == "str":
        if not isinstance(value, str) or not value:
            raise bad("a non-empty string")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or int(value) != value:
            raise bad("a whole number")
        low, high = _INT_RANGES.get(name, (0, 2**31 - 1))
        if not low <= value <= high:
            raise StackOutputsError(f"stack '{stack}' output '{name}' is {int(value)}, outside {low}..{high}",
                                    "fix the infra program's export or the outputs file")
        return int(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if kind == "object":
        if not isinstance(value, dict):
            raise bad("an object")
        return value
    if kind == "list[str]":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("an array of strings")
        return list(value)
    raise AssertionError(kind)


def parse_outputs(stack: str, raw: Mapping[str, Any], source: str = "") -> StackOutputs:
    """Validate a flat outputs mapping against the contract. Unknown extra outputs are ignored."""
    values: dict[str, Any] = {}
    missing = sorted(n for n in REQUIRED_OUTPUTS if n not in raw or raw[n] is None)
    if missing:
        shown = ", ".join(missing[:5]) + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
        raise StackOutputsError(
            f"stack '{stack}' is missing output(s) {shown}" + (f" in {source}" if source else ""),
            "run `pulumi up` for that stack or pass the right --outputs file",
        )
    for name, (kind, _required) in _SPEC.items():
        if name in raw and raw[name] is not None:
            values[name] = _coerce(stack, name, kind, raw[name])
    interval = values["backup_interval_minutes"]
    for k, v in interval.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= MAX_INTERVAL_MINUTES:
            raise StackOutputsError(
                f"stack '{stack}' output 'backup_interval_minutes.{k}' should be a number of minutes in "
                f"1..{MAX_INTERVAL_MINUTES}",
                "fix the infra program's export",
            )
    for job, arn in values["recovery_role_arns"].items():
        if not isinstance(arn, str) or not arn.startswith("arn:"):
            raise StackOutputsError(
                f"stack '{stack}' output 'recovery_role_arns.{job}' should be a role ARN",
                "fix the infra program's export",
            )
    if values["role"] not in ("primary", "dr"):
        raise StackOutputsError(
            f"stack '{stack}' output 'role' is '{values['role']}', expected 'primary' or 'dr'",
            "fix the infra program's export",
        )
    return StackOutputs(stack=stack, source=source, **values)


# ---------------------------------------------------------------------------------------- sources


def outputs_from_document(stack: str, doc: Any, source: str) -> dict[str, Any]:
    """Flat outputs from a `stack output --json`, `stack export` or state-file document."""
    if not isinstance(doc, dict):
        raise StackOutputsError(f"{source} holds a JSON {_json_kind(doc)}, not an object",
                                "pass the output of `pulumi stack output --json`")
    deployment = None
    if isinstance(doc.get("deployment"), dict):  # pulumi stack export
        deployment = doc["deployment"]
    elif isinstance(doc.get("checkpoint"), dict):  # a self-managed backend's state file
        deployment = doc["checkpoint"].get("latest") or {}
    if deployment is None:
        return doc  # pulumi stack output --json
    resources = deployment.get("resources") or []
    if not isinstance(resources, list) or not all(isinstance(r, dict) for r in resources):
        raise StackOutputsError(f"{source} has a malformed deployment (resources is not a list of objects)",
                                "pass the output of `pulumi stack export` or `pulumi stack output --json`")
    for res in resources:
        if res.get("type") == STACK_RESOURCE_TYPE:
            urn = str(res.get("urn", ""))
            # urn:pulumi:<stack>::<project>::pulumi:pulumi:Stack::<name>
            parts = urn.split(":")
            urn_stack = parts[2] if len(parts) > 2 else ""
            if urn_stack and urn_stack != stack and urn_stack.split("/")[-1] != stack.split("/")[-1]:
                raise StackOutputsError(
                    f"{source} holds stack '{urn_stack}', not '{stack}'",
                    "pass --stack matching the file, or the right file",
                )
            outputs = res.get("outputs") or {}
            if not isinstance(outputs, dict):
                raise StackOutputsError(f"{source}: the stack resource's outputs are a JSON {_json_kind(outputs)}, "
                                        "not an object", "pass the output of `pulumi stack output --json`")
            return dict(outputs)
    raise StackOutputsError(
        f"{source} has no {STACK_RESOURCE_TYPE} resource, so stack '{stack}' has no outputs there",
        "has the stack ever been deployed (`pulumi up`)?",
    )


_REGENERATE = "regenerate it with `pulumi stack output --json > FILE`"
# No output is longer than an ARN; a longer digit string is a corrupt file (and Python refuses to
# convert more than 4300 digits at all).
MAX_DIGITS = 20


class _Malformed(ValueError):
    """Raised from inside json.loads' hooks: the document holds a value no output can have."""


def _number(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_DIGITS:
        raise _Malformed(f"a {digits}-digit number")
    return int(text)


def _constant(name: str) -> Any:
    raise _Malformed(f"the non-JSON constant {name}")


def _json_kind(doc: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(doc), "number")


def _load_json_bytes(data: bytes, source: str) -> Any:
    """The document in `data`; each way it can be broken has its own message."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise StackOutputsError(f"{source} is gzip-compressed but corrupt ({exc})", _REGENERATE) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise StackOutputsError(f"{source} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                                _REGENERATE) from None
    if not text.strip():
        raise StackOutputsError(f"{source} is empty", _REGENERATE)
    try:
        return json.loads(text, parse_int=_number, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise StackOutputsError(f"{source} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
                                _REGENERATE) from None
    except _Malformed as exc:
        raise StackOutputsError(f"{source} holds {exc}, which no stack output can be", _REGENERATE) from None
    except RecursionError:
        raise StackOutputsError(f"{source} is nested too deeply to be stack outputs", _REGENERATE) from None


MAX_OUTPUTS_BYTES = 16 * 1024 * 1024  # a stack export is kilobytes; more is not an outputs file


def from_file(stack: str, path: str | os.PathLike[str]) -> StackOutputs:
    p = Path(path)
    data = read_regular_file(p, "outputs file", StackOutputsError, limit=MAX_OUTPUTS_BYTES,
                             fix_special="save the outputs to a file first: `pulumi stack output --json > FILE`",
                             fix_missing="pass the path of `pulumi stack output --json` saved output")
    return parse_outputs(stack, outputs_from_document(stack, _load_json_bytes(data, str(p)), str(p)), str(p))


def from_pulumi_cli(stack: str, pulumi: str) -> StackOutputs:
    proc = subprocess.run([pulumi, "stack", "output", "--json", "--stack", stack],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise StackOutputsError(f"pulumi could not read stack '{stack}': {last}",
                                "check the stack name (`pulumi stack ls`) and your backend login")
    doc = _load_json_bytes(proc.stdout.encode(), "pulumi stack output")
    return parse_outputs(stack, outputs_from_document(stack, doc, "pulumi CLI"), "pulumi CLI")


class _Backend:
    """Read-only view of a self-managed Pulumi backend (file:// or s3://)."""

    def __init__(self, url: str) -> None:
        self.url = url
        u = urlparse(url)
        self.scheme = u.scheme
        if u.scheme == "file":
            self.root = Path((u.netloc + u.path) if u.netloc not in ("", "localhost") else u.path)
        elif u.scheme == "s3":
            self.bucket = u.netloc
            self.prefix = u.path.strip("/")
        else:
            raise StackOutputsError(f"PULUMI_BACKEND_URL scheme '{u.scheme}' is not supported here",
                                    "use file:// or s3://, or pass --outputs FILE")

    def _s3(self) -> Any:
        from recovery.aws import client  # local import: stack.py stays free of boto3 for parsing

        return client("s3", os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))

    def list(self) -> list[str]:
        """Relative paths of every state file under .pulumi/stacks."""
        if self.scheme == "file":
            base = self.root / ".pulumi" / "stacks"
            if not base.is_dir():
                return []
            return sorted(str(p.relative_to(base)) for p in base.rglob("*.json*") if p.is_file())
        from recovery.aws import aws_error  # local import, as in _s3

        prefix = "/".join(x for x in (self.prefix, ".pulumi/stacks/") if x)
        try:
            pages = self._s3().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            return sorted(o["Key"][len(prefix):] for page in pages for o in page.get("Contents", []))
        except Exception as exc:  # noqa: BLE001 - mapped to a one-line error
            raise aws_error(exc, f"reading Pulumi backend {self.url}") from None

    def read(self, rel: str) -> bytes:
        if self.scheme == "file":
            return (self.root / ".pulumi" / "stacks" / rel).read_bytes()
        prefix = "/".join(x for x in (self.prefix, ".pulumi/stacks/") if x)
        body: bytes = self._s3().get_object(Bucket=self.bucket, Key=prefix + rel)["Body"].read()
        return body


def from_backend(stack: str, url: str) -> StackOutputs:
    backend = _Backend(url)
    files = [f for f in backend.list() if f.endswith((".json", ".json.gz"))]
    want_project, _, want_stack = stack.rpartition("/")
    want_stack = want_stack.split("/")[-1]
    candidates = []
    for rel in files:
        parts = rel.split("/")
        name = parts[-1].removesuffix(".gz").removesuffix(".json")
        if name != want_stack:
            continue
        project = parts[-2] if len(parts) >= 2 else ""
        if want_project and project != want_project.split("/")[-1]:
            continue
        candidates.append(rel)
    if not candidates:
        known = sorted({f.split("/")[-1].removesuffix(".gz").removesuffix(".json") for f in files})
        raise StackOutputsError(
            f"stack '{stack}' not found in backend {url}"
            + (f" (known: {', '.join(known)})" if known else " (it holds no stacks)"),
            "check --stack, or PULUMI_BACKEND_URL",
        )
    # Prefer .json over .json.gz when both exist (Pulumi writes one); projects must be unambiguous.
    by_project: dict[str, str] = {}
    for rel in sorted(candidates, key=lambda r: r.endswith(".gz")):
        by_project.setdefault(rel.rsplit("/", 1)[0] if "/" in rel else "", rel)
    if len(by_project) > 1:
        raise StackOutputsError(
            f"stack '{stack}' exists in several projects of {url}: {', '.join(sorted(by_project))}",
            "pass --stack PROJECT/STACK",
        )
    rel = next(iter(by_project.values()))
    source = f"{url.rstrip('/')}/.pulumi/stacks/{rel}"
    doc = _load_json_bytes(backend.read(rel), source)
    return parse_outputs(stack, outputs_from_document(stack, doc, source), source)


def load_outputs(stack: str, outputs_file: str | os.PathLike[str] | None = None) -> StackOutputs:
    """The stack's outputs from the first source that applies (see the module docstring)."""
    if not stack:
        raise StackOutputsError("no stack given", "pass --stack NAME (e.g. production)")
    if outputs_file:
        return from_file(stack, outputs_file)
    if stack in LOCAL_STACKS and not os.environ.get("PULUMI_BACKEND_URL"):
        # The embedded default: `recovery local up` wrote these stacks' outputs, which say where
        # its emulator is (aws_endpoint_url) and which identity to start from.
        url = local_backend_url()
        if not (local_dir() / "backend").is_dir():
            raise LocalEnvError(f"no local environment in {local_dir()} for stack '{stack}'",
                                    "start one with `recovery local up` (or pass --outputs FILE)")
        return from_backend(stack, url)
    url = os.environ.get("PULUMI_BACKEND_URL")
    if url and urlparse(url).scheme in ("file", "s3"):
        return from_backend(stack, url)
    pulumi = shutil.which("pulumi")
    if pulumi:
        return from_pulumi_cli(stack, pulumi)
    if url:
        return from_backend(stack, url)  # says which schemes it can read without the CLI
    raise StackOutputsError(
        f"no source for stack '{stack}' outputs",
        "pass --outputs FILE, install the pulumi CLI, or set PULUMI_BACKEND_URL to a file:// or s3:// backend",
    )


def to_dict(outputs: StackOutputs) -> dict[str, Any]:
    d = dataclasses.asdict(outputs)
    d.pop("stack")
    d.pop("source")
    return {k: v for k, v in d.items() if v is not None}
