"""The moto patch: ``install()`` replaces moto's
``ActionAuthenticatorMixin._authenticate_and_authorize_action`` with ``_authorize`` (resolve
the principal, map the request to checks, ask the sidecar, record, refuse with the AWS error)
and neutralises moto's condition-less ``FakeBucket.get_permission``; ``uninstall()`` restores
both."""

from __future__ import annotations

import threading
from typing import Any

from recovery.local.iam.actions import _checks
from recovery.local.iam.call import _Call
from recovery.local.iam.errors import _denial_message, _error
from recovery.local.iam.facts import _Check, _Principal, _unique
from recovery.local.iam.principal import _CredentialError, _principal
from recovery.local.iam.records import _record, _set_record_file
from recovery.local.iam.sidecar import _SIDECAR, check_prerequisites

_LOCK = threading.Lock()
_ORIGINALS: list[tuple[Any, str, Any]] = []


def install(*, record_file: str | None = None) -> None:
    """Authorise every moto request in this process from now on. Idempotent; a second call
    only changes the record file. Raises RuntimeError when node or the evaluator is missing."""
    check_prerequisites()
    with _LOCK:
        _set_record_file(record_file)
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
    with _LOCK:
        while _ORIGINALS:
            owner, name, original = _ORIGINALS.pop()
            setattr(owner, name, original)
        _set_record_file(None)
    _SIDECAR.stop()


def installed() -> bool:
    """Whether install() is in effect in this process."""
    return bool(_ORIGINALS)


def _patch(owner: Any, name: str, new: Any) -> None:
    _ORIGINALS.append((owner, name, owner.__dict__[name]))
    setattr(owner, name, new)


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
