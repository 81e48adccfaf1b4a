"""AWS Backup (infra/aurora_backup.py) in the emulator: handlers for deploy.py's replay, and the backup account.

The plan's locked vault lives in a separate account, declared through a provider pinned to it
(`allowedAccountIds`); infra/offline.py records that account on each resource it creates. moto keeps
one state per account and takes the account from the `x-moto-account-id` header, so `in_account`
makes the admin client of that account's root: the vault, its key, access policy and lock are created
*there*, with the ARNs AWS would give them, and the source account sees none of them.

moto has plans, vaults and Vault Lock; selections and vault access policies come from
recovery/local/emulator/backup.py. The service role's AWS managed policies are in moto's IAM.
"""

from __future__ import annotations

from typing import Any

ACCOUNT = "123456789012"  # the emulated (source) account: moto's default, and infra/offline.py's
ACCOUNT_HEADER = "x-moto-account-id"


def in_account(client: Any, account: str | None) -> Any:
    """`client`, with every request made in `account` (None: moto's default account)."""
    if account and account != ACCOUNT:
        client.meta.events.register("before-sign", lambda request, **_: request.headers.__setitem__(ACCOUNT_HEADER, account))
    return client


def in_account_of(d: Any, r: Any, handler: Any, inputs: dict[str, Any]) -> dict[str, str]:
    """Run `handler` for resource `r` with the deployment's clients in `r`'s account (infra/offline.py `account`)."""
    d.account = None if getattr(r, "account", ACCOUNT) == ACCOUNT else r.account
    try:
        return handler(d, r, inputs)  # type: ignore[no-any-return]
    finally:
        d.account = None


def _days(lifecycle: dict[str, Any] | None) -> dict[str, int]:
    return {"DeleteAfterDays": int(lifecycle["deleteAfter"])} if lifecycle and lifecycle.get("deleteAfter") else {}


def _rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A plan rule's Pulumi inputs -> CreateBackupPlan's BackupRuleInput."""
    out: dict[str, Any] = {"RuleName": rule["ruleName"], "TargetBackupVaultName": rule["targetVaultName"]}
    names = {"schedule": "ScheduleExpression", "enableContinuousBackup": "EnableContinuousBackup",
             "startWindow": "StartWindowMinutes", "completionWindow": "CompletionWindowMinutes",
             "recoveryPointTags": "RecoveryPointTags", "scheduleExpressionTimezone": "ScheduleExpressionTimezone"}
    out.update({api: (int(rule[k]) if isinstance(rule[k], float) else rule[k]) for k, api in names.items()
                if rule.get(k) is not None})
    if _days(rule.get("lifecycle")):
        out["Lifecycle"] = _days(rule.get("lifecycle"))
    copies = [{"DestinationBackupVaultArn": c["destinationVaultArn"], **({"Lifecycle": _days(c.get("lifecycle"))}
                                                                         if _days(c.get("lifecycle")) else {})}
              for c in rule.get("copyActions") or []]
    if copies:
        out["CopyActions"] = copies
    return out


def _vault(d: Any, r: Any, i: dict[str, Any]) -> dict[str, str]:
    kw = {"EncryptionKeyArn": i["kmsKeyArn"]} if i.get("kmsKeyArn") else {}
    arn = d.client("backup", r.region).create_backup_vault(BackupVaultName=i["name"], **kw)["BackupVaultArn"]
    return {r.outputs["arn"]: arn}


def _vault_policy(d: Any, r: Any, i: dict[str, Any]) -> dict[str, str]:
    d.client("backup", r.region).put_backup_vault_access_policy(BackupVaultName=i["backupVaultName"], Policy=i["policy"])
    return {}


def _vault_lock(d: Any, r: Any, i: dict[str, Any]) -> dict[str, str]:
    names = {"minRetentionDays": "MinRetentionDays", "maxRetentionDays": "MaxRetentionDays",
             "changeableForDays": "ChangeableForDays"}
    d.client("backup", r.region).put_backup_vault_lock_configuration(
        BackupVaultName=i["backupVaultName"], **{api: int(i[k]) for k, api in names.items() if i.get(k) is not None})
    return {}


def _plan(d: Any, r: Any, i: dict[str, Any]) -> dict[str, str]:
    plan = d.client("backup", r.region).create_backup_plan(
        BackupPlan={"BackupPlanName": i["name"], "Rules": [_rule(rule) for rule in i["rules"]]})
    return {r.id: plan["BackupPlanId"], r.outputs["arn"]: plan["BackupPlanArn"], r.outputs["version"]: plan["VersionId"]}


def _selection(d: Any, r: Any, i: dict[str, Any]) -> dict[str, str]:
    selection = {"SelectionName": i["name"], "IamRoleArn": i["iamRoleArn"], "Resources": list(i.get("resources") or [])}
    found = d.client("backup", r.region).create_backup_selection(BackupPlanId=i["planId"], BackupSelection=selection)
    return {r.id: found["SelectionId"]}


def _role_policy_attachment(d: Any, r: Any, i: dict[str, Any]) -> dict[str, str]:
    d.client("iam", "us-east-1").attach_role_policy(RoleName=i["role"], PolicyArn=i["policyArn"])
    return {}


BACKUP_HANDLERS = {
    "aws:backup/vault:Vault": _vault,
    "aws:backup/vaultPolicy:VaultPolicy": _vault_policy,
    "aws:backup/vaultLockConfiguration:VaultLockConfiguration": _vault_lock,
    "aws:backup/plan:Plan": _plan,
    "aws:backup/selection:Selection": _selection,
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": _role_policy_attachment,
}
