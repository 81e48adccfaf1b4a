"""Recovery points out of a thief's reach (infra/aurora_backup.py): a stack rule.

Every Aurora cluster is in an AWS Backup selection whose plan copies into a vault of *another*
account, and that vault has Vault Lock in compliance mode (`changeableForDays` set; without it the
lock is governance mode, which that account's administrators can remove) with a minimum retention.
Stolen admin credentials of the source account then cannot delete the last copies.

Which vault is in another account is read from the ARNs (the account field of the vault's `arn`
against the plan's own). During a first `pulumi preview` those ARNs are unknown: the rule then
links locks to vaults by name or property dependency, and reports nothing it cannot prove, as
the rest of the pack does (fsbp_rules.py, "Unknown values"); `pulumi up` runs it again with them.
"""

from __future__ import annotations

from typing import Any, List

from pulumi_policy import PolicyResource, ReportViolation, StackValidationArgs, StackValidationPolicy

BACKUP_VAULT = "aws:backup/vault:Vault"
BACKUP_VAULT_LOCK = "aws:backup/vaultLockConfiguration:VaultLockConfiguration"
BACKUP_PLAN = "aws:backup/plan:Plan"
BACKUP_SELECTION = "aws:backup/selection:Selection"
RDS_CLUSTER = "aws:rds/cluster:Cluster"


def _account(arn: Any) -> str | None:
    parts = arn.split(":") if isinstance(arn, str) and arn.startswith("arn:") else []
    return parts[4] if len(parts) > 5 and parts[4] else None


def _deps(resource: PolicyResource, key: str) -> List[PolicyResource]:
    return list((getattr(resource, "property_dependencies", None) or {}).get(key) or [])


def _copy_targets(plan: PolicyResource) -> List[Any]:
    from fsbp_rules import items, prop

    return [prop(copy, "destinationVaultArn") for rule in items(prop(plan.props, "rules"))
            for copy in items(prop(rule, "copyActions"))]


def _foreign_vaults(plan: PolicyResource, vaults: List[PolicyResource]) -> tuple[List[PolicyResource], bool]:
    """The stack's vaults in another account that `plan` copies into, and whether that could be decided:
    not while the plan's own ARN, or a copy target of a plan with none found, is unknown (preview)."""
    from fsbp_rules import UNKNOWN, prop

    own = _account(prop(plan.props, "arn"))
    targets = _copy_targets(plan)
    found = [v for v in vaults if prop(v.props, "arn") in targets and own is not None
             and _account(prop(v.props, "arn")) not in (None, own)]
    return found, bool(found) or (own is not None and UNKNOWN not in targets)


def _locks_of(vault: PolicyResource, locks: List[PolicyResource]) -> List[PolicyResource]:
    from fsbp_rules import UNKNOWN, prop

    name = prop(vault.props, "name")
    return [lock for lock in locks
            if (name is not UNKNOWN and prop(lock.props, "backupVaultName") == name)
            or any(d.urn == vault.urn for d in _deps(lock, "backupVaultName"))]


def _check_lock(vault: PolicyResource, locks: List[PolicyResource], report_violation: ReportViolation) -> None:
    from fsbp_rules import UNKNOWN, as_number, prop

    shown = prop(vault.props, "name")
    mine = _locks_of(vault, locks)
    if not mine:
        report_violation(f"backup-account vault {shown} has no Vault Lock: that account's administrators (or a thief "
                         "with their credentials) can delete its recovery points", vault.urn)
        return
    for lock in mine:
        days = prop(lock.props, "changeableForDays")
        if days is not UNKNOWN and as_number(days) is None:
            report_violation(f"the Vault Lock of backup-account vault {shown} is in governance mode (no changeableForDays): "
                             "set changeable_for_days for compliance mode", lock.urn)
        minimum = prop(lock.props, "minRetentionDays")
        if minimum is not UNKNOWN and as_number(minimum) is None:
            report_violation(f"the Vault Lock of backup-account vault {shown} sets no minRetentionDays: a copy could "
                             "be made with a retention of one day and expire", lock.urn)


def validate_backup_account_vault_locked(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    # fsbp_rules lists this rule in its STACK_POLICIES: its helpers are imported at call time.
    from fsbp_rules import UNKNOWN, _of_type, items, prop

    vaults, locks = _of_type(args.resources, BACKUP_VAULT), _of_type(args.resources, BACKUP_VAULT_LOCK)
    plans, selections = _of_type(args.resources, BACKUP_PLAN), _of_type(args.resources, BACKUP_SELECTION)
    checked: set[str] = set()
    for plan in plans:
        foreign, decided = _foreign_vaults(plan, vaults)
        if decided and not foreign:
            report_violation(f"backup plan {prop(plan.props, 'name')} copies to no vault in another account: every "
                             "recovery point stays where stolen admin credentials can delete it", plan.urn)
        for vault in foreign:
            if vault.urn not in checked:
                checked.add(vault.urn)
                _check_lock(vault, locks, report_violation)
    for cluster in _of_type(args.resources, RDS_CLUSTER):
        arn = prop(cluster.props, "arn")
        covered = [s for s in selections if (arn is not UNKNOWN and arn in items(prop(s.props, "resources")))
                   or any(d.urn == cluster.urn for d in _deps(s, "resources"))
                   or UNKNOWN in items(prop(s.props, "resources")) and not _deps(s, "resources")]
        if not covered:
            report_violation(f"Aurora cluster {prop(cluster.props, 'clusterIdentifier')} is in no AWS Backup selection: "
                             "it has no recovery point outside Aurora's own", cluster.urn)


BACKUP_ACCOUNT_VAULT_LOCKED = StackValidationPolicy(
    name="XAI.Backup.backup-account-vault-locked",
    description="Every Aurora cluster is in an AWS Backup selection; each backup plan copies into a vault of another "
                "account, and that vault has Vault Lock in compliance mode (changeableForDays) with a minimum retention.",
    validate=validate_backup_account_vault_locked)

POLICIES = [BACKUP_ACCOUNT_VAULT_LOCKED]
