"""Authorise every request to the in-process moto emulator as AWS IAM would.

moto 5.2.5's own enforcement ignores conditions and, for most services, resource scoping, and
names actions after its operations (``s3:HeadBucket``, ``monitoring:*``). ``install()`` replaces
it in this process: each request that reaches
``ActionAuthenticatorMixin._authenticate_and_authorize_action`` (every service request moto
serves; S3 calls it once per bucket or object operation) is turned into AWS's IAM action(s),
resource ARN(s) and request context, and evaluated by ``@cloud-copilot/iam-simulate`` in a
Node.js sidecar (``evaluator/simulate.mjs``). A denial is answered with the protocol's own
AWS error, so boto3 raises an ordinary ``ClientError``. moto's condition-less bucket-policy
check (``FakeBucket.get_permission``, used by ``S3Response._key_response`` and DeleteObjects) is
neutralised, since ours evaluates the bucket policy with its conditions. moto's
INITIAL_NO_AUTH_ACTION_COUNT is not consulted and SigV4 signatures are not verified (moto's
verification is broken for Route 53; see ENVIRONMENT.md).

Who is calling (from the SigV4 credential: the Authorization header, or X-Amz-Credential of a
presigned URL):

- an IAM user's access key: the user's inline and attached policies and those of its groups;
  aws:username, aws:userid. An Inactive key is refused with InvalidClientTokenId.
- an assumed-role key (moto's STS backend): the role's inline and attached policies, its
  permissions boundary and the session policy passed to AssumeRole; the caller is the session
  ARN arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION, aws:PrincipalArn the role ARN and
  aws:TokenIssueTime the session's creation. A wrong session token or an expired session is
  refused (InvalidClientTokenId / ExpiredToken).
- a key shaped like an AWS key (AKIA/ASIA + 16) that moto does not know (e.g. deleted): refused
  with InvalidClientTokenId, as AWS does.
- any other key (the dummy "testing"): the account root arn:aws:iam::ACCOUNT:root. Its identity
  allows everything, but resource-policy Denies (bucket policies, trust policies, key
  policies, secret policies) still apply to it, as in AWS.
- no credential at all: the anonymous principal (only a resource policy can allow it).

What is evaluated per request: the identity policies above, the resource policy (S3 bucket
policy, IAM role trust policy for sts:AssumeRole, the KMS key policy moto stores, a Secrets
Manager secret's resource policy), permissions boundaries and session policies, with the
context keys aws:SecureTransport ("true" only over TLS: see MotoServer), aws:PrincipalArn,
aws:PrincipalAccount, aws:PrincipalType, aws:userid, aws:username (users), aws:TokenIssueTime
(sessions), aws:CurrentTime, aws:EpochTime, aws:RequestedRegion (credential scope), aws:SourceIp,
s3:x-amz-server-side-encryption and s3:x-amz-server-side-encryption-aws-kms-key-id (object
writes; for UploadPart and CompleteMultipartUpload those given at CreateMultipartUpload, which
is what AWS applies), s3:prefix/s3:delimiter/s3:max-keys (listings), sts:RoleSessionName and
sts:ExternalId (AssumeRole), kms:RequestAlias, and ec2:Vpc where the EC2 resource has one.
A request may need several actions (CopyObject: s3:PutObject on the target and s3:GetObject on
the source; PutObject with x-amz-tagging also s3:PutObjectTagging; FailoverGlobalCluster the
global cluster and the target cluster); all must be allowed. ``sts:GetCallerIdentity`` and
CORS preflights are never refused. An operation that is not in the tables below is allowed for
the root and, for any other principal, evaluated as ``service:Operation`` on "*" and recorded
with ``"unmapped": true``.

Known limits:

- Not modelled: SCPs, RCPs, VPC endpoint policies, S3 ACLs, S3 Block Public Access, access
  points, users' permissions boundaries, managed session policies (AssumeRole PolicyArns).
- Dependent actions AWS checks behind a call are not checked: kms:GenerateDataKey/kms:Decrypt
  behind SSE-KMS objects, iam:PassRole (e.g. PutBucketReplication), ec2:CreateTags behind
  TagSpecifications.
- Condition keys not listed above (aws:PrincipalTag, aws:ResourceTag, aws:MultiFactorAuthPresent,
  s3:x-amz-acl, kms:EncryptionContext, route53:ChangeResourceRecordSets* ...) are absent, so a
  policy that tests them sees a missing key. iam-simulate drops keys the action's resource type
  does not define, as AWS does (ec2:Vpc exists for security groups and network interfaces, not
  for instances).
- An unmapped operation is evaluated on "*", which iam-simulate treats as "any resource pattern
  in the policies" for resource-scoped actions: lenient. For the root it is not evaluated at all,
  and a root request the evaluator rejects as invalid is allowed (the record says why).
- The root may call sts:AssumeRole here (AWS refuses root credentials for it): the local mode
  runs as root and assumes roles.
- DeleteObjects is refused whole (every key reported AccessDenied) when any key is denied;
  AWS decides per key.
- A key moto does not know and that does not look like an AWS key is root, so a typo in a
  dummy key is not refused. Signatures are not checked, so any secret works with a known key.
- The action catalogue is the iam-data release pinned in evaluator/package-lock.json: an action
  AWS added later is "unknown" and refused for IAM principals.

Records: with ``install(record_file=path)`` each authorised request appends one JSON line
(``read_records(path)`` reads them back): time, principal (the caller's ARN; the access key for a
refused credential), principal_arn (the role ARN for a session), operation ("s3:PutObject" as the
API names it), action and resource (of the deciding check: the first refused, else the first),
region, decision, detail (the deciding statement Sids, "no statement allows ...", or why nothing
was evaluated), unmapped, checks (how many checks the request needed) and checked (each
[action, resource] pair of them).

The sidecar: one ``node evaluator/simulate.mjs`` per Python process, started on first use,
restarted if it dies, stopped by ``uninstall()`` and at exit. It needs Node.js 20+ and
``evaluator/node_modules`` (``make venv`` installs it with ``npm ci``).
"""

from __future__ import annotations

import atexit
import base64
import datetime as _dt
import json
import os
import re
import shutil
import subprocess
import threading
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, unquote, urlparse
from xml.sax.saxutils import escape

from werkzeug.exceptions import HTTPException

EVALUATOR_DIR = Path(__file__).with_name("evaluator")

_ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}

_LOCK = threading.Lock()
_RECORD_LOCK = threading.Lock()
_ORIGINALS: list[tuple[Any, str, Any]] = []
_RECORD_FILE: str | None = None


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

def install(*, record_file: str | None = None) -> None:
    """Authorise every moto request in this process from now on. Idempotent; a second call
    only changes the record file. Raises RuntimeError when node or the evaluator is missing."""
    global _RECORD_FILE
    _check_prerequisites()
    with _LOCK:
        _RECORD_FILE = record_file
        if _ORIGINALS:
            return
        from moto.core.authorization import ActionAuthenticatorMixin
        from moto.iam.access_control import PermissionResult
        from moto.s3.models import FakeBucket

        _patch(ActionAuthenticatorMixin, "_authenticate_and_authorize_action", _authorize)
        # Our evaluation covers the bucket policy, with conditions; moto's would deny without them.
        _patch(FakeBucket, "get_permission", lambda self, action, resource: PermissionResult.NEUTRAL)


def uninstall() -> None:
    """Restore moto's own code and stop the sidecar."""
    global _RECORD_FILE
    with _LOCK:
        while _ORIGINALS:
            owner, name, original = _ORIGINALS.pop()
            setattr(owner, name, original)
        _RECORD_FILE = None
    _SIDECAR.stop()


def installed() -> bool:
    """Whether install() is in effect in this process."""
    return bool(_ORIGINALS)


def read_records(path: str) -> list[dict[str, Any]]:
    """The records an installed authorizer appended to `path` (any process), oldest first."""
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def _patch(owner: Any, name: str, new: Any) -> None:
    _ORIGINALS.append((owner, name, owner.__dict__[name]))
    setattr(owner, name, new)


# --------------------------------------------------------------------------------------------
# The sidecar
# --------------------------------------------------------------------------------------------

def _check_prerequisites() -> None:
    if shutil.which("node") is None:
        raise RuntimeError("IAM evaluator: `node` (Node.js 20+) is not on PATH; install Node.js, then run `make venv`")
    if not (EVALUATOR_DIR / "node_modules" / "@cloud-copilot" / "iam-simulate").is_dir():
        raise RuntimeError(f"IAM evaluator: {EVALUATOR_DIR / 'node_modules'} is missing; run `make venv` "
                           f"(npm ci --prefix {EVALUATOR_DIR})")


class _Sidecar:
    """One long-lived `node simulate.mjs`; requests are serialised (one line out, one line in)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._pid = 0  # the Python process that started it (a fork must start its own)

    def ask(self, simulation: dict[str, Any]) -> dict[str, Any]:
        line = json.dumps(simulation) + "\n"
        with self._lock:
            for _ in range(2):  # once more after a restart, if it died under us
                proc = self._running()
                try:
                    proc.stdin.write(line)  # type: ignore[union-attr]
                    proc.stdin.flush()  # type: ignore[union-attr]
                    answer = proc.stdout.readline()  # type: ignore[union-attr]
                except (BrokenPipeError, OSError):
                    answer = ""
                if answer:
                    return json.loads(answer)
                self._kill()
        raise RuntimeError("IAM evaluator: node simulate.mjs exited twice on one request (see its stderr)")

    def stop(self) -> None:
        with self._lock:
            self._kill()

    def _running(self) -> subprocess.Popen[str]:
        if self._proc is None or self._proc.poll() is not None or self._pid != os.getpid():
            _check_prerequisites()
            self._proc = subprocess.Popen(
                ["node", str(EVALUATOR_DIR / "simulate.mjs")], cwd=EVALUATOR_DIR, text=True, bufsize=1,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            self._pid = os.getpid()
        return self._proc

    def _kill(self) -> None:
        if self._proc is not None and self._pid == os.getpid():
            self._proc.kill()
            self._proc.wait()
        self._proc = None


_SIDECAR = _Sidecar()
atexit.register(_SIDECAR.stop)


# --------------------------------------------------------------------------------------------
# The hook
# --------------------------------------------------------------------------------------------

@dataclass
class _Check:
    """One IAM decision a request needs."""

    action: str
    resource: str
    context: dict[str, str] = field(default_factory=dict)
    resource_policy: Any = None
    resource_account: str | None = None


@dataclass
class _Principal:
    kind: str  # "root" | "user" | "role" | "anonymous"
    arn: str  # the caller as AWS names it in errors: the session ARN for a role
    principal_arn: str  # aws:PrincipalArn: the role ARN for a session
    policies: list[dict[str, Any]] = field(default_factory=list)
    boundary: list[dict[str, Any]] = field(default_factory=list)
    session_policy: Any = None
    context: dict[str, str] = field(default_factory=dict)


class _CredentialError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _authorize(self: Any, iam_request_cls: type, resource: str = "*") -> None:
    """Replaces ActionAuthenticatorMixin._authenticate_and_authorize_action (same signature)."""
    from moto.core.authorization import ActionAuthenticatorMixin

    if self.method == "OPTIONS" or self.headers.get("X-Amz-Target") in ActionAuthenticatorMixin.PUBLIC_OPERATIONS:
        return  # CORS preflights and Cognito's public operations are not signed in AWS either
    call = _Call(self, resource)
    try:
        call.caller = _principal(call)
    except _CredentialError as e:
        operation, checks, unmapped = _checks(call)
        _record(call, operation, None, checks[0], {"decision": "ImplicitlyDenied", "detail": e.message}, unmapped)
        raise _error(call, e.code, e.message) from None
    principal = call.caller
    operation, checks, unmapped = _checks(call)
    check, answer = _decide(principal, checks, unmapped)
    _record(call, operation, principal, check, answer, unmapped, checks)
    if answer["decision"] != "Allowed":
        raise _error(call, "AccessDenied", _denial_message(principal, check, answer))


def _decide(principal: _Principal, checks: list[_Check], unmapped: bool) -> tuple[_Check, dict[str, Any]]:
    """The first check that is not allowed, or the first check when all are."""
    if principal.kind == "root" and unmapped:
        return checks[0], {"decision": "Allowed", "detail": "root; operation not mapped, not evaluated"}
    if checks[0].action == "sts:GetCallerIdentity":
        return checks[0], {"decision": "Allowed", "detail": "sts:GetCallerIdentity is always allowed"}
    decided: tuple[_Check, dict[str, Any]] | None = None
    for check in _unique(checks):
        answer = _SIDECAR.ask(_simulation(principal, check))
        if principal.kind == "root" and answer.get("invalid"):
            # The root's identity allows everything; what could not be evaluated is no deny.
            answer = {"decision": "Allowed", "detail": f"root; not evaluated: {answer['detail']}"}
        if answer["decision"] != "Allowed":
            return check, answer
        decided = decided or (check, answer)
    assert decided is not None
    return decided


def _unique(checks: list[_Check]) -> Iterable[_Check]:
    seen: set[str] = set()
    for check in checks:
        key = json.dumps([check.action, check.resource, check.context], sort_keys=True)
        if key not in seen:
            seen.add(key)
            yield check


def _simulation(principal: _Principal, check: _Check) -> dict[str, Any]:
    simulation: dict[str, Any] = {
        "request": {
            "principal": principal.arn,
            "action": check.action,
            "resource": {"resource": check.resource, "accountId": check.resource_account or principal.context.get(
                "aws:PrincipalAccount", "")},
            "contextVariables": {**principal.context, **check.context},
        },
        "identityPolicies": principal.policies,
    }
    if check.resource_policy:
        simulation["resourcePolicy"] = check.resource_policy
    if principal.boundary:
        simulation["permissionBoundaryPolicies"] = principal.boundary
    if principal.session_policy:
        simulation["sessionPolicy"] = principal.session_policy
    return simulation


# --------------------------------------------------------------------------------------------
# The request
# --------------------------------------------------------------------------------------------

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/")
_SCOPE_TO_PREFIX = {"monitoring": "cloudwatch"}  # credential scope -> IAM prefix, where they differ


class _Call:
    """The facts of one request that the mapping and the errors need."""

    def __init__(self, response: Any, moto_resource: str) -> None:
        self.response = response
        self.moto_resource = moto_resource
        self.query = {k: v[0] for k, v in parse_qs(urlparse(response.uri).query, keep_blank_values=True).items()}
        self.key_id, scope_region, scope_service = self._credential()
        self.service = _SCOPE_TO_PREFIX.get(scope_service or "", scope_service or response.service_name)
        self.region = scope_region or getattr(response, "region", None) or "us-east-1"
        self.account = response.current_account
        self.json_protocol = "json" in response.headers.get("Content-Type", "")
        self.operation = "" if self.service == "s3" else response._get_action()
        self.secure = response.normalized_request.scheme == "https"
        self.caller: _Principal | None = None

    def _credential(self) -> tuple[str | None, str | None, str | None]:
        headers = self.response.headers
        auth = headers.get("Authorization", "")
        match = _CREDENTIAL.search(auth) or _CREDENTIAL.search("Credential=" + self.query.get("X-Amz-Credential", ""))
        if match:
            return match.group(1), match.group(2), match.group(3)
        if auth.startswith("AWS "):  # SigV2
            return auth[4:].split(":")[0], None, None
        return self.query.get("AWSAccessKeyId"), None, None

    @property
    def token(self) -> str | None:
        # SigV2 presigned URLs spell it x-amz-security-token, SigV4 ones X-Amz-Security-Token.
        in_query = next((v for k, v in self.query.items() if k.lower() == "x-amz-security-token"), None)
        return self.response.headers.get("X-Amz-Security-Token") or in_query

    @property
    def params(self) -> dict[str, Any]:
        """Request parameters: the JSON body (json protocols) or the query/form fields."""
        if not hasattr(self, "_params"):
            body = self.response.body
            if self.json_protocol:
                try:
                    self._params = json.loads(body or "{}")
                except (ValueError, UnicodeDecodeError):
                    self._params = {}
            else:
                self._params = {k: v[0] if isinstance(v, list) else v for k, v in self.response.querystring.items()}
        return self._params

    def param(self, name: str, default: str = "") -> str:
        value = self.params.get(name)
        return str(value) if value not in (None, "") else default

    def members(self, name: str) -> list[str]:
        """A list parameter: JSON array, or query-protocol Name.N / Name.member.N."""
        value = self.params.get(name)
        if isinstance(value, list):
            return [str(v) for v in value]
        pattern = re.compile(rf"^{re.escape(name)}\.(?:member\.)?(\d+)$")
        found = [(int(m.group(1)), v) for k, v in self.params.items() if (m := pattern.match(k))]
        return [str(v) for _, v in sorted(found)]

    def arn(self, resource: str, *, region: str | None = None, account: str | None = None) -> str:
        """An ARN of this request's service; region/account "" for the ARNs that have none."""
        return f"arn:aws:{self.service}:{self.region if region is None else region}:" \
               f"{self.account if account is None else account}:{resource}"

    def check(self, resource: str, action: str | None = None, context: dict[str, str] | None = None,
              **kw: Any) -> _Check:
        return _Check(action or f"{self.service}:{self.operation}", resource, context or {}, **kw)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _iso(t: _dt.datetime) -> str:
    if t.tzinfo is None:  # moto keeps naive UTC datetimes
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------
# The principal
# --------------------------------------------------------------------------------------------

_AWS_KEY_SHAPE = re.compile(r"^(AKIA|ASIA)[A-Z0-9]{16}$")


def _principal(call: _Call) -> _Principal:
    from moto.iam.models import iam_backends

    now = _now()
    base = {"aws:SecureTransport": "true" if call.secure else "false", "aws:CurrentTime": _iso(now),
            "aws:EpochTime": str(int(now.timestamp())), "aws:RequestedRegion": call.region}
    source_ip = call.response.normalized_request.remote_addr
    if source_ip:
        base["aws:SourceIp"] = source_ip
    if not call.key_id:
        return _Principal("anonymous", "anonymous", "anonymous", context=base)
    iam = iam_backends[call.account]["aws"]
    key = iam.access_keys.get(call.key_id)
    if key is not None and key.user_name:
        principal = _user_principal(iam, key)
    elif key is not None:
        principal = _role_principal(iam, call)
    elif _AWS_KEY_SHAPE.match(call.key_id):
        raise _CredentialError("InvalidClientTokenId", "The security token included in the request is invalid.")
    else:
        root = f"arn:aws:iam::{call.account}:root"
        principal = _Principal("root", root, root, [{"name": "AccountRoot", "policy": _ALLOW_ALL}],
                               context={"aws:PrincipalType": "Account", "aws:userid": call.account})
    principal.context = {**base, "aws:PrincipalArn": principal.principal_arn, "aws:PrincipalAccount": call.account,
                         **principal.context}
    return principal


def _user_principal(iam: Any, key: Any) -> _Principal:
    if key.status != "Active":
        raise _CredentialError("InvalidClientTokenId", "The security token included in the request is invalid.")
    user = iam.get_user(key.user_name)
    policies = _named(user.policies, user.managed_policies)
    for group in iam.get_groups_for_user(user.name):
        policies += _named(group.policies, group.managed_policies, prefix=f"group/{group.name}/")
    return _Principal("user", user.arn, user.arn, policies,
                      context={"aws:username": user.name, "aws:userid": user.id, "aws:PrincipalType": "User"})


def _role_principal(iam: Any, call: _Call) -> _Principal:
    from moto.sts.models import sts_backends

    session = sts_backends[call.account]["aws"].get_assumed_role_from_access_key(call.key_id or "")
    if session is None or call.token != session.session_token:
        raise _CredentialError("InvalidClientTokenId", "The security token included in the request is invalid.")
    if session.expiration.replace(tzinfo=_dt.timezone.utc) < _now():
        raise _CredentialError("ExpiredToken", "The security token included in the request is expired")
    try:
        role = iam.get_role_by_arn(session.role_arn)
    except Exception:  # the role was deleted: the session keeps no permissions
        role = None
    policies = _named(role.policies, role.managed_policies) if role else []
    boundary = _named({}, {role.permissions_boundary_arn: iam.get_policy(role.permissions_boundary_arn)}) \
        if role and role.permissions_boundary_arn else []
    return _Principal(
        "role", session.arn, role.arn if role else session.role_arn, policies, boundary,
        json.loads(session.policy) if session.policy else None,
        context={"aws:TokenIssueTime": _iso(session.access_key.create_date), "aws:userid": session.user_id,
                 "aws:PrincipalType": "AssumedRole"})


def _named(inline: dict[str, Any], managed: dict[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    """moto's inline (name -> JSON) and managed (ARN -> policy) policies as iam-simulate takes them."""
    policies = [{"name": f"{prefix}{name}", "policy": _document(doc)} for name, doc in inline.items()]
    for arn, policy in managed.items():
        version = next(v for v in policy.versions if v.is_default)
        policies.append({"name": arn, "policy": _document(version.document)})
    return policies


def _document(doc: Any) -> Any:
    """moto keeps policy documents as JSON text (AWS managed ones sometimes as dicts)."""
    return json.loads(doc) if isinstance(doc, str) else doc


# --------------------------------------------------------------------------------------------
# Request -> checks
# --------------------------------------------------------------------------------------------

_MAPPERS: dict[tuple[str, str], Callable[[_Call], list[_Check]]] = {}


def _maps(service: str, *operations: str) -> Callable[[Callable[[_Call], list[_Check]]],
                                                         Callable[[_Call], list[_Check]]]:
    def register(fn: Callable[[_Call], list[_Check]]) -> Callable[[_Call], list[_Check]]:
        for operation in operations:
            _MAPPERS[(service, operation)] = fn
        return fn
    return register


def _checks(call: _Call) -> tuple[str, list[_Check], bool]:
    """(operation as the API names it, the checks it needs, whether our tables lack it)."""
    if call.service == "s3":
        mapped = _s3_checks(call)
        if mapped is None:
            return f"s3:{call.response.method}", [call.check("*", f"s3:{call.response.method}")], True
        return f"s3:{mapped[0]}", mapped[1], False
    mapper = _MAPPERS.get((call.service, call.operation))
    if mapper is None:
        return f"{call.service}:{call.operation}", [call.check("*")], True
    return f"{call.service}:{call.operation}", mapper(call), False


# ---- S3 -------------------------------------------------------------------------------------

# (level, method) -> [(sub-resource in the query, API operation, IAM action)], first match wins;
# None matches a request without a sub-resource.
_S3_OPERATIONS: dict[tuple[str, str], list[tuple[str | None, str, str]]] = {
    ("service", "GET"): [(None, "ListBuckets", "s3:ListAllMyBuckets")],
    ("bucket", "HEAD"): [(None, "HeadBucket", "s3:ListBucket")],
    ("bucket", "GET"): [
        ("uploads", "ListMultipartUploads", "s3:ListBucketMultipartUploads"),
        ("location", "GetBucketLocation", "s3:GetBucketLocation"),
        ("lifecycle", "GetBucketLifecycleConfiguration", "s3:GetLifecycleConfiguration"),
        ("versioning", "GetBucketVersioning", "s3:GetBucketVersioning"),
        ("policyStatus", "GetBucketPolicyStatus", "s3:GetBucketPolicyStatus"),
        ("policy", "GetBucketPolicy", "s3:GetBucketPolicy"),
        ("website", "GetBucketWebsite", "s3:GetBucketWebsite"),
        ("acl", "GetBucketAcl", "s3:GetBucketAcl"),
        ("tagging", "GetBucketTagging", "s3:GetBucketTagging"),
        ("logging", "GetBucketLogging", "s3:GetBucketLogging"),
        ("cors", "GetBucketCors", "s3:GetBucketCORS"),
        ("notification", "GetBucketNotificationConfiguration", "s3:GetBucketNotification"),
        ("accelerate", "GetBucketAccelerateConfiguration", "s3:GetAccelerateConfiguration"),
        ("publicAccessBlock", "GetPublicAccessBlock", "s3:GetBucketPublicAccessBlock"),
        ("object-lock", "GetObjectLockConfiguration", "s3:GetBucketObjectLockConfiguration"),
        ("inventory", "GetBucketInventoryConfiguration", "s3:GetInventoryConfiguration"),
        ("versions", "ListObjectVersions", "s3:ListBucketVersions"),
        ("encryption", "GetBucketEncryption", "s3:GetEncryptionConfiguration"),
        ("replication", "GetBucketReplication", "s3:GetReplicationConfiguration"),
        ("ownershipControls", "GetBucketOwnershipControls", "s3:GetBucketOwnershipControls"),
        ("list-type", "ListObjectsV2", "s3:ListBucket"),
        (None, "ListObjects", "s3:ListBucket"),
    ],
    ("bucket", "PUT"): [
        ("versioning", "PutBucketVersioning", "s3:PutBucketVersioning"),
        ("encryption", "PutBucketEncryption", "s3:PutEncryptionConfiguration"),
        ("lifecycle", "PutBucketLifecycleConfiguration", "s3:PutLifecycleConfiguration"),
        ("policy", "PutBucketPolicy", "s3:PutBucketPolicy"),
        ("replication", "PutBucketReplication", "s3:PutReplicationConfiguration"),
        ("ownershipControls", "PutBucketOwnershipControls", "s3:PutBucketOwnershipControls"),
        ("publicAccessBlock", "PutPublicAccessBlock", "s3:PutBucketPublicAccessBlock"),
        ("object-lock", "PutObjectLockConfiguration", "s3:PutBucketObjectLockConfiguration"),
        ("tagging", "PutBucketTagging", "s3:PutBucketTagging"),
        ("acl", "PutBucketAcl", "s3:PutBucketAcl"),
        ("cors", "PutBucketCors", "s3:PutBucketCORS"),
        ("website", "PutBucketWebsite", "s3:PutBucketWebsite"),
        ("logging", "PutBucketLogging", "s3:PutBucketLogging"),
        ("notification", "PutBucketNotificationConfiguration", "s3:PutBucketNotification"),
        ("accelerate", "PutBucketAccelerateConfiguration", "s3:PutAccelerateConfiguration"),
        ("inventory", "PutBucketInventoryConfiguration", "s3:PutInventoryConfiguration"),
        (None, "CreateBucket", "s3:CreateBucket"),
    ],
    ("bucket", "DELETE"): [
        ("policy", "DeleteBucketPolicy", "s3:DeleteBucketPolicy"),
        ("tagging", "DeleteBucketTagging", "s3:PutBucketTagging"),
        ("website", "DeleteBucketWebsite", "s3:DeleteBucketWebsite"),
        ("cors", "DeleteBucketCors", "s3:PutBucketCORS"),
        ("lifecycle", "DeleteBucketLifecycle", "s3:PutLifecycleConfiguration"),
        ("publicAccessBlock", "DeletePublicAccessBlock", "s3:PutBucketPublicAccessBlock"),
        ("encryption", "DeleteBucketEncryption", "s3:PutEncryptionConfiguration"),
        ("replication", "DeleteBucketReplication", "s3:PutReplicationConfiguration"),
        ("ownershipControls", "DeleteBucketOwnershipControls", "s3:PutBucketOwnershipControls"),
        ("inventory", "DeleteBucketInventoryConfiguration", "s3:PutInventoryConfiguration"),
        (None, "DeleteBucket", "s3:DeleteBucket"),
    ],
    ("bucket", "POST"): [("delete", "DeleteObjects", "s3:DeleteObject"), (None, "PostObject", "s3:PutObject")],
    ("object", "GET"): [
        ("uploadId", "ListParts", "s3:ListMultipartUploadParts"),
        ("acl", "GetObjectAcl", "s3:GetObjectAcl"),
        ("tagging", "GetObjectTagging", "s3:GetObjectTagging"),
        ("legal-hold", "GetObjectLegalHold", "s3:GetObjectLegalHold"),
        ("retention", "GetObjectRetention", "s3:GetObjectRetention"),
        ("attributes", "GetObjectAttributes", "s3:GetObjectAttributes"),
        (None, "GetObject", "s3:GetObject"),
    ],
    ("object", "HEAD"): [(None, "HeadObject", "s3:GetObject")],
    ("object", "PUT"): [
        ("partNumber", "UploadPart", "s3:PutObject"),
        ("retention", "PutObjectRetention", "s3:PutObjectRetention"),
        ("legal-hold", "PutObjectLegalHold", "s3:PutObjectLegalHold"),
        ("acl", "PutObjectAcl", "s3:PutObjectAcl"),
        ("tagging", "PutObjectTagging", "s3:PutObjectTagging"),
        (None, "PutObject", "s3:PutObject"),
    ],
    ("object", "DELETE"): [
        ("uploadId", "AbortMultipartUpload", "s3:AbortMultipartUpload"),
        ("tagging", "DeleteObjectTagging", "s3:DeleteObjectTagging"),
        (None, "DeleteObject", "s3:DeleteObject"),
    ],
    ("object", "POST"): [
        ("uploads", "CreateMultipartUpload", "s3:PutObject"),
        ("uploadId", "CompleteMultipartUpload", "s3:PutObject"),
        ("restore", "RestoreObject", "s3:RestoreObject"),
        ("select", "SelectObjectContent", "s3:GetObject"),
    ],
}

# With ?versionId= AWS checks the version's own action.
_S3_VERSIONED = {
    "s3:GetObject": "s3:GetObjectVersion", "s3:DeleteObject": "s3:DeleteObjectVersion",
    "s3:GetObjectAcl": "s3:GetObjectVersionAcl", "s3:PutObjectAcl": "s3:PutObjectVersionAcl",
    "s3:GetObjectTagging": "s3:GetObjectVersionTagging", "s3:PutObjectTagging": "s3:PutObjectVersionTagging",
    "s3:DeleteObjectTagging": "s3:DeleteObjectVersionTagging",
    "s3:GetObjectAttributes": "s3:GetObjectVersionAttributes",
}

# Headers of an object write that need a further permission in AWS.
_S3_OBJECT_HEADER_ACTIONS = {
    "x-amz-tagging": "s3:PutObjectTagging",
    "x-amz-object-lock-mode": "s3:PutObjectRetention",
    "x-amz-object-lock-legal-hold": "s3:PutObjectLegalHold",
}

_S3_SSE_KEYS = ("x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id")
_S3_NEW_OBJECT_OPERATIONS = {"PutObject", "CopyObject", "CreateMultipartUpload", "PostObject"}
_S3_PART_OPERATIONS = {"UploadPart", "UploadPartCopy", "CompleteMultipartUpload"}


def _s3_checks(call: _Call) -> tuple[str, list[_Check]] | None:
    # moto passes arn:aws:s3:::BUCKET[/KEY] (or arn:aws:s3:::* for ListBuckets), parsed its way.
    path = call.moto_resource.split(":::", 1)[1]
    bucket, _, key = path.partition("/")
    level = "service" if bucket == "*" else "object" if key else "bucket"
    found = _s3_operation(call, level)
    if found is None:
        return None
    operation, action = found
    if level == "service":
        return operation, [call.check("*", action)]
    if operation == "DeleteObjects":
        return operation, _s3_delete_objects(call, bucket)
    if operation == "PostObject":
        key = call.response.querystring.get("key", [""])[0]
    arn = f"arn:aws:s3:::{bucket}/{key}" if key else f"arn:aws:s3:::{bucket}"
    copy_source = call.response.headers.get("x-amz-copy-source")
    if copy_source and operation in ("PutObject", "UploadPart"):
        operation = "CopyObject" if operation == "PutObject" else "UploadPartCopy"
    checks = [_s3_check(call, bucket, arn, action, _s3_context(call, operation, bucket, key))]
    if copy_source:
        checks.append(_s3_copy_source_check(call, copy_source))
    checks += [_s3_check(call, bucket, arn, extra) for extra in _s3_header_actions(call, operation)]
    return operation, checks


def _s3_operation(call: _Call, level: str) -> tuple[str, str] | None:
    for subresource, operation, action in _S3_OPERATIONS.get((level, call.response.method), []):
        if subresource is None or subresource in call.query:
            if "versionId" in call.query:
                action = _S3_VERSIONED.get(action, action)
            return operation, action
    return None


def _s3_header_actions(call: _Call, operation: str) -> list[str]:
    headers = call.response.headers
    if operation == "CreateBucket":
        locked = headers.get("x-amz-bucket-object-lock-enabled", "").lower() == "true"
        return ["s3:PutBucketObjectLockConfiguration", "s3:PutBucketVersioning"] if locked else []
    if operation in _S3_NEW_OBJECT_OPERATIONS:
        return [action for header, action in _S3_OBJECT_HEADER_ACTIONS.items() if headers.get(header)]
    return []


def _s3_check(call: _Call, bucket: str, arn: str, action: str, context: dict[str, str] | None = None) -> _Check:
    s3_bucket = call.response.backend.buckets.get(bucket)
    policy = json.loads(s3_bucket.policy) if s3_bucket is not None and s3_bucket.policy else None
    return _Check(action, arn, context or {}, policy, s3_bucket.account_id if s3_bucket is not None else None)


def _s3_context(call: _Call, operation: str, bucket: str, key: str) -> dict[str, str]:
    headers = call.response.headers
    if operation in _S3_NEW_OBJECT_OPERATIONS:
        fields = call.response.querystring if operation == "PostObject" else {}
        values = {k: headers.get(k) or (fields.get(k) or [None])[0] for k in _S3_SSE_KEYS}
    elif operation in _S3_PART_OPERATIONS:
        values = _s3_upload_encryption(call, bucket)
    elif operation in ("ListObjects", "ListObjectsV2", "ListObjectVersions"):
        values = {f"s3:{k}": call.query.get(k) for k in ("prefix", "delimiter", "max-keys")}
        return {k: v for k, v in values.items() if v is not None}
    else:
        return {}
    # A missing header is a missing key, so StringNotEquals matches it (as in AWS).
    return {f"s3:{k}": v for k, v in values.items() if v}


def _s3_upload_encryption(call: _Call, bucket: str) -> dict[str, str | None]:
    """UploadPart/CompleteMultipartUpload carry no SSE headers: AWS applies the upload's own."""
    s3_bucket = call.response.backend.buckets.get(bucket)
    upload = s3_bucket.multiparts.get(call.query.get("uploadId", "")) if s3_bucket is not None else None
    if upload is None:
        return {}
    return {_S3_SSE_KEYS[0]: upload.sse_encryption, _S3_SSE_KEYS[1]: upload.kms_key_id}


def _s3_copy_source_check(call: _Call, copy_source: str) -> _Check:
    source, _, version = unquote(copy_source).lstrip("/").partition("?versionId=")
    source_bucket = source.split("/", 1)[0]
    return _s3_check(call, source_bucket, f"arn:aws:s3:::{source}",
                     "s3:GetObjectVersion" if version else "s3:GetObject")


def _s3_delete_objects(call: _Call, bucket: str) -> list[_Check]:
    try:
        objects = ET.fromstring(call.response.body).findall("{*}Object")
    except ET.ParseError:
        objects = []  # moto answers MalformedXML itself
    checks = []
    for obj in objects:
        key, version = obj.findtext("{*}Key", ""), obj.findtext("{*}VersionId")
        action = "s3:DeleteObjectVersion" if version else "s3:DeleteObject"
        checks.append(_s3_check(call, bucket, f"arn:aws:s3:::{bucket}/{key}", action))
    return checks or [_s3_check(call, bucket, f"arn:aws:s3:::{bucket}/*", "s3:DeleteObject")]


# ---- RDS ------------------------------------------------------------------------------------

def _rds(call: _Call, kind: str, ident: str) -> str:
    """An RDS ARN; identifiers may already be ARNs. A list call without one is `kind:*`."""
    if ident.startswith("arn:"):
        return ident
    region = "" if kind == "global-cluster" else None
    return call.arn(f"{kind}:{ident.lower() or '*'}", region=region)


@_maps("rds", "DescribeDBClusters")
def _rds_describe_clusters(call: _Call) -> list[_Check]:
    return [call.check(_rds(call, "cluster", call.param("DBClusterIdentifier")))]


@_maps("rds", "DescribeDBInstances")
def _rds_describe_instances(call: _Call) -> list[_Check]:
    return [call.check(_rds(call, "db", call.param("DBInstanceIdentifier")))]


@_maps("rds", "DescribeGlobalClusters")
def _rds_describe_global(call: _Call) -> list[_Check]:
    return [call.check(_rds(call, "global-cluster", call.param("GlobalClusterIdentifier")))]


@_maps("rds", "DescribeDBClusterSnapshots")
def _rds_describe_snapshots(call: _Call) -> list[_Check]:
    if call.param("DBClusterSnapshotIdentifier"):
        return [call.check(_rds(call, "cluster-snapshot", call.param("DBClusterSnapshotIdentifier")))]
    if call.param("DBClusterIdentifier"):
        return [call.check(_rds(call, "cluster", call.param("DBClusterIdentifier")))]
    return [call.check(_rds(call, "cluster-snapshot", ""))]


@_maps("rds", "FailoverGlobalCluster", "SwitchoverGlobalCluster")
def _rds_promote(call: _Call) -> list[_Check]:
    return [call.check(_rds(call, "global-cluster", call.param("GlobalClusterIdentifier"))),
            call.check(_rds(call, "cluster", call.param("TargetDbClusterIdentifier")))]


@_maps("rds", "RemoveFromGlobalCluster")
def _rds_remove_from_global(call: _Call) -> list[_Check]:
    return [call.check(_rds(call, "global-cluster", call.param("GlobalClusterIdentifier"))),
            call.check(_rds(call, "cluster", call.param("DbClusterIdentifier")))]


def _rds_optional(call: _Call, params: dict[str, str]) -> list[_Check]:
    """Checks on the parameter/subnet/option groups a call names (AWS checks only named ones)."""
    return [call.check(_rds(call, kind, call.param(name))) for name, kind in params.items() if call.param(name)]


@_maps("rds", "ModifyDBCluster")
def _rds_modify_cluster(call: _Call) -> list[_Check]:
    return [call.check(_rds(call, "cluster", call.param("DBClusterIdentifier"))),
            *_rds_optional(call, {"DBClusterParameterGroupName": "cluster-pg"})]


@_maps("rds", "RestoreDBClusterToPointInTime")
def _rds_restore_pitr(call: _Call) -> list[_Check]:
    return [call.check(_rds(call, "cluster", call.param("DBClusterIdentifier"))),
            call.check(_rds(call, "cluster", call.param("SourceDBClusterIdentifier"))),
            *_rds_optional(call, {"DBClusterParameterGroupName": "cluster-pg", "DBSubnetGroupName": "subgrp",
                                  "OptionGroupName": "og"})]


@_maps("rds", "CreateDBInstance")
def _rds_create_instance(call: _Call) -> list[_Check]:
    return [call.check(_rds(call, "db", call.param("DBInstanceIdentifier"))),
            *_rds_optional(call, {"DBClusterIdentifier": "cluster", "DBParameterGroupName": "pg",
                                  "DBSubnetGroupName": "subgrp", "OptionGroupName": "og"})]


@_maps("rds", "AddTagsToResource", "RemoveTagsFromResource", "ListTagsForResource")
def _rds_tags(call: _Call) -> list[_Check]:
    return [call.check(call.param("ResourceName", "*"))]


# ---- Route 53 -------------------------------------------------------------------------------

def _route53_id(call: _Call, kind: str) -> str:
    match = re.search(rf"/{kind}/([^/?]+)", call.response.path)
    return f"arn:aws:route53:::{kind}/{match.group(1) if match else '*'}"


@_maps("route53", "GetHealthCheck", "GetHealthCheckStatus", "UpdateHealthCheck", "DeleteHealthCheck")
def _route53_health_check(call: _Call) -> list[_Check]:
    return [call.check(_route53_id(call, "healthcheck"))]


@_maps("route53", "ListResourceRecordSets", "ChangeResourceRecordSets", "GetHostedZone")
def _route53_zone(call: _Call) -> list[_Check]:
    return [call.check(_route53_id(call, "hostedzone"))]


@_maps("route53", "ListHostedZones", "ListHealthChecks", "CreateHealthCheck", "GetChange")
def _route53_unscoped(call: _Call) -> list[_Check]:
    return [call.check("*")]


# ---- Secrets Manager ------------------------------------------------------------------------

@_maps("secretsmanager", "GetSecretValue", "PutSecretValue", "DescribeSecret", "ListSecretVersionIds",
       "UpdateSecretVersionStage", "StopReplicationToReplica", "RotateSecret", "UpdateSecret",
       "GetResourcePolicy", "TagResource")
def _secret(call: _Call) -> list[_Check]:
    from moto.secretsmanager.models import secretsmanager_backends

    secret_id = call.param("SecretId")
    secret = secretsmanager_backends[call.account][call.region].secrets.get(secret_id)
    if secret is None:  # moto answers ResourceNotFound once we allow it
        arn = secret_id if secret_id.startswith("arn:") else call.arn(f"secret:{secret_id}")
        return [call.check(arn)]
    policy = getattr(secret, "policy", None)
    return [call.check(secret.arn, resource_policy=json.loads(policy) if policy else None)]


@_maps("secretsmanager", "ListSecrets")
def _secrets_list(call: _Call) -> list[_Check]:
    return [call.check("*")]


# ---- ElastiCache, SSM, CloudWatch, CloudTrail -----------------------------------------------

@_maps("elasticache", "DescribeReplicationGroups", "ModifyReplicationGroup")
def _replication_group(call: _Call) -> list[_Check]:
    return [call.check(call.arn(f"replicationgroup:{call.param('ReplicationGroupId').lower() or '*'}"))]


def _ssm_parameter(call: _Call, name: str) -> str:
    return name if name.startswith("arn:") else call.arn("parameter" + (name if name.startswith("/") else f"/{name}"))


@_maps("ssm", "GetParameter", "PutParameter", "DeleteParameter", "GetParameterHistory")
def _ssm_one(call: _Call) -> list[_Check]:
    return [call.check(_ssm_parameter(call, call.param("Name")))]


@_maps("ssm", "GetParameters")
def _ssm_many(call: _Call) -> list[_Check]:
    return [call.check(_ssm_parameter(call, name)) for name in call.members("Names")] or [call.check("*")]


@_maps("cloudwatch", "GetMetricStatistics", "GetMetricData", "ListMetrics", "PutMetricData", "DescribeAlarms")
def _cloudwatch_unscoped(call: _Call) -> list[_Check]:
    return [call.check("*")]


@_maps("cloudtrail", "StartLogging", "StopLogging", "GetTrailStatus", "GetTrail")
def _trail(call: _Call) -> list[_Check]:
    name = call.param("Name")
    return [call.check(name if name.startswith("arn:") else call.arn(f"trail/{name}"))]


@_maps("cloudtrail", "DescribeTrails", "LookupEvents")
def _cloudtrail_unscoped(call: _Call) -> list[_Check]:
    return [call.check("*")]


# ---- EC2 ------------------------------------------------------------------------------------

# Resource-ID prefix -> the resource type in its ARN.
_EC2_ID_KINDS = {"i-": "instance", "sg-": "security-group", "vol-": "volume", "snap-": "snapshot",
                 "ami-": "image", "eni-": "network-interface", "vpc-": "vpc", "subnet-": "subnet",
                 "igw-": "internet-gateway", "rtb-": "route-table", "acl-": "network-acl",
                 "eipalloc-": "elastic-ip", "nat-": "natgateway", "lt-": "launch-template"}


def _ec2(call: _Call, kind: str, ident: str, action: str | None = None) -> _Check:
    """A check on one EC2 resource, with ec2:Vpc when moto knows the resource's VPC."""
    account = "" if kind in ("image", "snapshot") else None  # AWS-owned namespaces: no account
    vpc = _ec2_vpc(call, kind, ident)
    context = {"ec2:Vpc": call.arn(f"vpc/{vpc}")} if vpc else {}
    return call.check(call.arn(f"{kind}/{ident}", account=account), action, context)


def _ec2_vpc(call: _Call, kind: str, ident: str) -> str | None:
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[call.account][call.region]
    lookup = {"instance": backend.get_instance, "security-group": backend.get_security_group_from_id,
              "network-interface": backend.get_network_interface}.get(kind)
    if lookup is None or ident == "*":
        return None
    try:
        return getattr(lookup(ident), "vpc_id", None)
    except Exception:  # an unknown ID: moto answers its own not-found error once we allow it
        return None


@_maps("ec2", "DescribeInstances", "DescribeSecurityGroups", "DescribeNetworkInterfaces", "DescribeImages",
       "DescribeSnapshots", "DescribeVolumes", "DescribeVpcs", "DescribeSubnets", "DescribeRegions",
       "DescribeAvailabilityZones", "DescribeTags")
def _ec2_describe(call: _Call) -> list[_Check]:
    return [call.check("*")]


@_maps("ec2", "CreateSecurityGroup")
def _ec2_create_security_group(call: _Call) -> list[_Check]:
    vpc = call.param("VpcId")
    group = call.check(call.arn("security-group/*"), context={"ec2:Vpc": call.arn(f"vpc/{vpc}")} if vpc else {})
    return [group, _ec2(call, "vpc", vpc)] if vpc else [group]


@_maps("ec2", "RevokeSecurityGroupEgress", "RevokeSecurityGroupIngress", "AuthorizeSecurityGroupEgress",
       "AuthorizeSecurityGroupIngress", "DeleteSecurityGroup")
def _ec2_security_group(call: _Call) -> list[_Check]:
    return [_ec2(call, "security-group", call.param("GroupId", "*"))]


@_maps("ec2", "ModifyNetworkInterfaceAttribute")
def _ec2_modify_eni(call: _Call) -> list[_Check]:
    groups = call.members("SecurityGroupId") or call.members("Groups")
    return [_ec2(call, "network-interface", call.param("NetworkInterfaceId", "*")),
            *(_ec2(call, "security-group", group) for group in groups)]


@_maps("ec2", "CreateTags", "DeleteTags")
def _ec2_tags(call: _Call) -> list[_Check]:
    checks = []
    for ident in call.members("ResourceId"):
        kind = next((k for prefix, k in _EC2_ID_KINDS.items() if ident.startswith(prefix)), ident.split("-")[0])
        checks.append(_ec2(call, kind, ident))
    return checks or [call.check("*")]


@_maps("ec2", "CreateImage")
def _ec2_create_image(call: _Call) -> list[_Check]:
    return [_ec2(call, "instance", call.param("InstanceId", "*")), _ec2(call, "image", "*"),
            _ec2(call, "snapshot", "*")]


@_maps("ec2", "CreateSnapshot")
def _ec2_create_snapshot(call: _Call) -> list[_Check]:
    return [_ec2(call, "volume", call.param("VolumeId", "*")), _ec2(call, "snapshot", "*")]


@_maps("ec2", "TerminateInstances", "StopInstances", "StartInstances", "RebootInstances")
def _ec2_instances(call: _Call) -> list[_Check]:
    return [_ec2(call, "instance", ident) for ident in call.members("InstanceId")] or [call.check("*")]


# ---- IAM, STS -------------------------------------------------------------------------------

def _iam_entity(call: _Call, kind: str, name: str, fallback: str) -> str:
    from moto.iam.models import iam_backends

    if not name:
        return fallback
    iam = iam_backends[call.account]["aws"]
    try:
        return (iam.get_user(name) if kind == "user" else iam.get_role(name)).arn  # the ARN has the path
    except Exception:
        return f"arn:aws:iam::{call.account}:{kind}/{name}"


@_maps("iam", "GetUser", "ListAccessKeys", "UpdateAccessKey", "DeleteAccessKey", "CreateAccessKey",
       "ListUserPolicies", "ListAttachedUserPolicies", "ListGroupsForUser")
def _iam_user(call: _Call) -> list[_Check]:
    # Without UserName these act on the caller itself.
    caller = call.caller.principal_arn if call.caller else "*"
    return [call.check(_iam_entity(call, "user", call.param("UserName"), caller))]


@_maps("iam", "ListRolePolicies", "PutRolePolicy", "GetRole", "GetRolePolicy", "DeleteRolePolicy",
       "ListAttachedRolePolicies", "UpdateAssumeRolePolicy")
def _iam_role(call: _Call) -> list[_Check]:
    return [call.check(_iam_entity(call, "role", call.param("RoleName"), "*"))]


@_maps("sts", "AssumeRole")
def _sts_assume_role(call: _Call) -> list[_Check]:
    """Both the caller's identity policies and the role's trust policy (as resource policy)."""
    from moto.iam.models import iam_backends

    role_arn = call.param("RoleArn")
    account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else call.account
    try:
        trust = _document(iam_backends[account]["aws"].get_role_by_arn(role_arn).assume_role_policy_document)
    except Exception:  # no such role: nothing trusts the caller, as in AWS
        trust = None
    context = {"sts:RoleSessionName": call.param("RoleSessionName")}
    if call.param("ExternalId"):
        context["sts:ExternalId"] = call.param("ExternalId")
    return [call.check(role_arn, context=context, resource_policy=trust, resource_account=account)]


@_maps("sts", "GetCallerIdentity")
def _sts_caller(call: _Call) -> list[_Check]:
    return [call.check("*")]


# ---- KMS ------------------------------------------------------------------------------------

@_maps("kms", "DescribeKey", "Encrypt", "Decrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
       "ReEncrypt", "GetKeyPolicy", "EnableKeyRotation", "GetKeyRotationStatus", "ScheduleKeyDeletion")
def _kms_key(call: _Call) -> list[_Check]:
    """The key's ARN, whatever the caller named it by; its key policy is the resource policy."""
    from moto.kms.models import kms_backends

    requested = call.param("KeyId") or call.param("SourceKeyId") or _kms_key_in_ciphertext(call)
    backend = kms_backends[call.account][call.region]
    context = {"kms:RequestAlias": requested} if requested.startswith("alias/") or ":alias/" in requested else {}
    try:
        key = backend.describe_key(requested)
    except Exception:  # unknown key: moto answers NotFound once we allow it
        return [call.check(call.arn(f"key/{requested or '*'}"), context=context)]
    return [call.check(key.arn, context=context, resource_policy=_document(key.policy))]


def _kms_key_in_ciphertext(call: _Call) -> str:
    """Decrypt may omit KeyId: moto's ciphertext blob starts with the 36-character key ID."""
    try:
        return base64.b64decode(call.param("CiphertextBlob"))[:36].decode()
    except (ValueError, UnicodeDecodeError):
        return ""


# --------------------------------------------------------------------------------------------
# Records and errors
# --------------------------------------------------------------------------------------------

def _record(call: _Call, operation: str, principal: _Principal | None, check: _Check, answer: dict[str, Any],
            unmapped: bool, checks: list[_Check] | None = None) -> None:
    """One JSON line per authorised request: the deciding check (the first refused, else the first),
    and every (action, resource) the request needed, so a grant used only as a request's second
    resource (CreateSecurityGroup's VPC) counts as used."""
    if _RECORD_FILE is None:
        return
    entry = {
        "time": _iso(_now()), "principal": principal.arn if principal else call.key_id,
        "principal_arn": principal.principal_arn if principal else None, "operation": operation or call.operation,
        "action": check.action, "resource": check.resource, "region": call.region,
        "decision": answer["decision"], "detail": answer["detail"], "unmapped": unmapped,
        "checks": len(checks or [check]), "checked": [[c.action, c.resource] for c in _unique(checks or [check])],
    }
    with _RECORD_LOCK, open(_RECORD_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


_REASONS = {
    ("identity", False): "because no identity-based policy allows the {action} action",
    ("identity", True): "with an explicit deny in an identity-based policy",
    ("resource", False): "because no resource-based policy allows the {action} action",
    ("resource", True): "with an explicit deny in a resource-based policy",
    ("pb", False): "because no permissions boundary allows the {action} action",
    ("pb", True): "with an explicit deny in a permissions boundary",
    ("session", False): "because no session policy allows the {action} action",
    ("session", True): "with an explicit deny in a session policy",
}


def _denial_message(principal: _Principal, check: _Check, answer: dict[str, Any]) -> str:
    denial = answer.get("denial") or {}
    reason = _REASONS.get((denial.get("policyType", "identity"), bool(denial.get("explicit"))),
                          _REASONS[("identity", False)])
    return (f"User: {principal.arn} is not authorized to perform: {check.action} on resource: {check.resource} "
            + reason.format(action=check.action))


# Our codes (query-protocol spelling) -> what the JSON protocols, EC2 and S3 call them, with
# EC2's and S3's own wording for refused credentials.
_JSON_CODES = {"AccessDenied": "AccessDeniedException", "InvalidClientTokenId": "UnrecognizedClientException",
               "ExpiredToken": "ExpiredTokenException"}
_EC2_ERRORS = {"InvalidClientTokenId": ("AuthFailure", 401, "AWS was not able to validate the provided access "
                                                            "credentials")}
_S3_ERRORS = {"InvalidClientTokenId": ("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist "
                                                             "in our records."),
              "ExpiredToken": ("ExpiredToken", "The provided token has expired.")}


def _error(call: _Call, code: str, message: str) -> Exception:
    """The AWS error for the request's protocol, in the form moto passes on to the client."""
    if call.service == "s3":
        return _s3_error(call, code, message)
    request_id = str(uuid.uuid4())
    if call.json_protocol:
        # call_action sends our body with its own response headers dict: the type goes in there.
        call.response.response_headers.update({"Content-Type": "application/x-amz-json-1.1",
                                               "X-Amzn-ErrorType": _JSON_CODES[code]})
        return _HTTPError(400, json.dumps({"__type": _JSON_CODES[code], "message": message}))
    if call.service == "ec2":
        ec2_code, status, text = _EC2_ERRORS.get(code, (code, 403, message))
        if code == "AccessDenied":
            ec2_code, text = "UnauthorizedOperation", f"You are not authorized to perform this operation. {message}"
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{ec2_code}</Code>"
                f"<Message>{escape(text)}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>")
        return _HTTPError(status, body)
    call.response.response_headers["Content-Type"] = "text/xml"
    return _HTTPError(403, f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><ErrorResponse><Error><Type>Sender</Type>"
                           f"<Code>{code}</Code><Message>{escape(message)}</Message></Error>"
                           f"<RequestId>{request_id}</RequestId></ErrorResponse>")


def _s3_error(call: _Call, code: str, message: str) -> Exception:
    from moto.s3.exceptions import BucketAccessDeniedError, S3ClientError

    if code != "AccessDenied":
        return S3ClientError(*_S3_ERRORS[code])
    # A BucketAccessDeniedError: DeleteObjects then answers per key, as S3 does when all are denied.
    error = BucketAccessDeniedError(bucket=call.response.bucket_name or "")
    error.message = message
    return error


class _HTTPError(HTTPException):
    """moto's call_action answers an HTTPException raised by the hook with (description, code)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(description=body)
        self.code = status
