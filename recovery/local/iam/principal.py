"""Who is calling: the access key of a request resolved against moto's IAM and STS backends to
an IAM user, an assumed-role session, the account root or the anonymous principal, with the
policies that apply to it and its global condition keys. A credential AWS would refuse raises
``_CredentialError``."""

from __future__ import annotations

import datetime as _dt
import json
import re
from typing import Any

from recovery.local.iam.call import _Call
from recovery.local.iam.facts import _Principal, _document, _iso, _now

_ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
_AWS_KEY_SHAPE = re.compile(r"^(AKIA|ASIA)[A-Z0-9]{16}$")


class _CredentialError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


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
