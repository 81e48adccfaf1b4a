"""AWS Backup: backup selections and vault access policies, which moto 5.2.5 lacks.

AWS: a backup plan says when and where recovery points are made; a *selection* (CreateBackupSelection,
under /backup/plans/{id}/selections/) says which resources the plan covers and which IAM role AWS
Backup assumes for them. A vault's *access policy* (PutBackupVaultAccessPolicy, under
/backup-vaults/{name}/access-policy) is its resource policy: the backup account's vault allows the
source account `backup:CopyIntoBackupVault`. Vault Lock (PutBackupVaultLockConfiguration) with
ChangeableForDays is compliance mode: after the lock date the lock and the retention bounds are
immutable; DescribeBackupVault reports Locked, MinRetentionDays, MaxRetentionDays and LockDate.

moto 5.2.5: plans, vaults and the vault lock (with its lock date, its bounds and its refusal to
change after the lock date) are implemented. Selections answer HTTP 500 (NotImplementedError), and
the access-policy path is not routed at all (HTTP 404), so `local up` could not deploy what
infra/aurora_backup.py declares.

This extension: Create/Get/List/DeleteBackupSelection (the plan must exist; a selection needs a
name, a role ARN and resources or tags, as AWS validates; ids are AWS-shaped), and
Put/Get/DeleteBackupVaultAccessPolicy (the vault must exist; the policy must be JSON), and AWS
Backup's service-role managed policies (AWSBackupServiceRolePolicyForBackup/-ForRestores), which
exist in every AWS account but which moto loads only with MOTO_IAM_LOAD_MANAGED_POLICIES (all
1,000-odd of them, in every account's backend): AttachRolePolicy of one of them takes it from moto's
own copy of AWS's policies instead of answering NoSuchEntity. It only
*adds* operations moto answers with an error, replacing none of moto's, so ``install`` sets them
once for the process and ``emulator.uninstall()`` leaves them: the test fixtures' plain moto server
(recovery/local/moto_server.py installs them) and the local daemon both serve them.

State lives on moto's own backend object (``_extra``), so ``POST /moto-api/reset`` clears it with
the backend. Recovery points, backup/copy/restore jobs belong here too when they are emulated: add
the state to ``BackupExtra`` and the operations to ``_OPERATIONS``.
"""

from __future__ import annotations

import functools
import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

_LOCK = threading.Lock()
_ACCESS_POLICY_PATH = "{0}/backup-vaults/(?P<name>[^/]+)/access-policy$"


@dataclass
class BackupExtra:
    """What this extension keeps per account and region, beside moto's own backend state."""

    selections: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # plan id -> selection id -> it
    vault_policies: dict[str, str] = field(default_factory=dict)  # vault name -> policy JSON


def extra(backend: Any) -> BackupExtra:
    with _LOCK:
        if "_extra" not in backend.__dict__:
            backend.__dict__["_extra"] = BackupExtra()
        return backend.__dict__["_extra"]  # type: ignore[no-any-return]


def install() -> None:
    from moto.backup import urls
    from moto.backup.responses import BackupResponse

    with _LOCK:
        for name, fn in _OPERATIONS.items():
            if name not in BackupResponse.__dict__:  # moto's own, if a later moto has it, wins
                setattr(BackupResponse, name, fn)
        # The routing table moto's server reads when it first serves AWS Backup.
        urls.url_paths.setdefault(_ACCESS_POLICY_PATH, urls.response.dispatch)
        _service_role_policies()


SERVICE_ROLE_POLICIES = ("AWSBackupServiceRolePolicyForBackup", "AWSBackupServiceRolePolicyForRestores")


def _service_role_policies() -> None:
    """AttachRolePolicy finds AWS Backup's managed policies (see above); others are as moto has them."""
    from moto.iam.models import IAMBackend

    original = IAMBackend.attach_role_policy
    if getattr(original, "_backup_policies", False):
        return

    def attach_role_policy(backend: Any, policy_arn: str, role_name: str) -> None:
        name = policy_arn.rsplit("/", 1)[-1]
        if policy_arn not in backend.managed_policies and policy_arn.startswith("arn:aws:iam::aws:policy/") \
                and name in SERVICE_ROLE_POLICIES:
            policy = _aws_policy(backend, name)
            backend.managed_policies[policy.arn] = policy
        original(backend, policy_arn, role_name)

    attach_role_policy._backup_policies = True  # type: ignore[attr-defined]
    IAMBackend.attach_role_policy = attach_role_policy  # type: ignore[method-assign]


def _aws_policy(backend: Any, name: str) -> Any:
    from moto.iam.models import AWSManagedPolicy

    return AWSManagedPolicy.from_data(name, backend.account_id, backend.region_name, _aws_policy_data()[name])


@functools.cache
def _aws_policy_data() -> dict[str, Any]:
    """moto's copy of AWS's managed policies (about 1,300 of them): parsed once, ~0.1 s."""
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    return {n: d for n, d in json.loads(aws_managed_policies_data).items() if n in SERVICE_ROLE_POLICIES}


# ----------------------------------------------------------------------------------- selections

def _error(code: str, message: str) -> Exception:
    from moto.core.exceptions import JsonRESTError

    return JsonRESTError(code, message)  # AWS Backup answers JSON errors with these codes, HTTP 400


def _plan(resp: Any) -> tuple[Any, str]:
    plan_id = resp.path.split("/plans/")[1].split("/")[0]
    backend = resp.backup_backend
    if plan_id not in backend.plans or backend.plans[plan_id].deletion_date is not None:
        raise _error("ResourceNotFoundException", f"Failed reading Backup plan {plan_id}")
    return backend, plan_id


def _create_selection(resp: Any) -> str:
    from moto.core.utils import unix_time

    backend, plan_id = _plan(resp)
    body = json.loads(resp.body or "{}")
    selection = dict(body.get("BackupSelection") or {})
    if not selection.get("SelectionName") or not str(selection.get("IamRoleArn", "")).startswith("arn:"):
        raise _error("InvalidParameterValueException", "BackupSelection needs a SelectionName and an IamRoleArn")
    if not (selection.get("Resources") or selection.get("ListOfTags") or selection.get("Conditions")):
        raise _error("InvalidParameterValueException", "BackupSelection selects nothing (no Resources, tags or conditions)")
    selection_id = str(uuid.uuid4())
    extra(backend).selections.setdefault(plan_id, {})[selection_id] = {
        "BackupSelection": selection, "SelectionId": selection_id, "BackupPlanId": plan_id,
        "CreationDate": unix_time(), "CreatorRequestId": body.get("CreatorRequestId") or str(uuid.uuid4())}
    return json.dumps({"SelectionId": selection_id, "BackupPlanId": plan_id, "CreationDate": unix_time()})


def _selection(resp: Any) -> tuple[dict[str, dict[str, Any]], str]:
    backend, plan_id = _plan(resp)
    selection_id = resp.path.rstrip("/").rsplit("/", 1)[-1]
    found = extra(backend).selections.get(plan_id, {})
    if selection_id not in found:
        raise _error("ResourceNotFoundException", f"Selection {selection_id} of plan {plan_id} not found")
    return found, selection_id


def _get_selection(resp: Any) -> str:
    found, selection_id = _selection(resp)
    return json.dumps(found[selection_id])


def _delete_selection(resp: Any) -> str:
    found, selection_id = _selection(resp)
    del found[selection_id]
    return "{}"


def _list_selections(resp: Any) -> str:
    backend, plan_id = _plan(resp)
    rows = [{"SelectionId": s["SelectionId"], "SelectionName": s["BackupSelection"]["SelectionName"],
             "BackupPlanId": plan_id, "IamRoleArn": s["BackupSelection"]["IamRoleArn"], "CreationDate": s["CreationDate"],
             "CreatorRequestId": s["CreatorRequestId"]}
            for s in extra(backend).selections.get(plan_id, {}).values()]
    return json.dumps({"BackupSelectionsList": rows})


# -------------------------------------------------------------------------------- access policies

def _vault(resp: Any) -> tuple[Any, Any]:
    from moto.backup.exceptions import ResourceNotFoundException

    name = resp.path.rstrip("/").split("/")[-2]
    backend = resp.backup_backend
    if name not in backend.vaults:
        raise ResourceNotFoundException(msg=f"Backup vault {name} not found")
    return backend, backend.vaults[name]


def _put_policy(resp: Any) -> str:
    backend, vault = _vault(resp)
    policy = json.loads(resp.body or "{}").get("Policy")
    try:
        json.loads(policy or "")
    except ValueError:
        raise _error("InvalidParameterValueException", "Policy is not a JSON policy document") from None
    extra(backend).vault_policies[vault.backup_vault_name] = policy
    return "{}"


def _get_policy(resp: Any) -> str:
    backend, vault = _vault(resp)
    policy = extra(backend).vault_policies.get(vault.backup_vault_name)
    if policy is None:
        raise _error("ResourceNotFoundException", f"Backup vault {vault.backup_vault_name} has no access policy")
    return json.dumps({"BackupVaultName": vault.backup_vault_name, "BackupVaultArn": vault.backup_vault_arn,
                       "Policy": policy})


def _delete_policy(resp: Any) -> str:
    backend, vault = _vault(resp)
    extra(backend).vault_policies.pop(vault.backup_vault_name, None)
    return "{}"


# moto's response method names (its dispatcher maps each AWS operation to one).
_OPERATIONS: dict[str, Callable[[Any], str]] = {
    "create_backup_selection": _create_selection,
    "get_backup_selection": _get_selection,
    "delete_backup_selection": _delete_selection,
    "list_backup_selections": _list_selections,
    "put_backup_vault_access_policy": _put_policy,
    "get_backup_vault_access_policy": _get_policy,
    "delete_backup_vault_access_policy": _delete_policy,
}
