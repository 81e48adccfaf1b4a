"""Aurora-native recovery points (issue 16): an AWS Backup plan for this site's Aurora cluster.

- A continuous-backup rule (point-in-time restore, up to AWS's 35 days) and a scheduled snapshot rule
  into this site's vault, under a customer-managed key.
- Each snapshot is copied to the peer site's vault (the other region) and to a vault in the separate
  backup account, in this site's region: AWS Backup copies RDS/Aurora snapshots across regions or
  across accounts in one copy action, never both at once.
- The backup-account vault has Vault Lock in compliance mode: after `changeableForDays` nobody,
  not even that account's root, can delete a copy before its retention or remove the lock. It is
  declared here, through a provider for that account, so that each site's stack (and plan) holds
  the locked vault of its own region (docs/backups.md says why this and not a stack of its own).

Cross-account copies of an Aurora snapshot need the snapshot's key (the cluster's storage key,
infra/aurora.py) shared with the backup account, and the destination key to let this account
encrypt under it: `shared_key_policy` writes both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from stack_config import AuroraBackup

# The AWS managed policies for AWS Backup's service role: what AWS Backup needs to snapshot, copy and
# restore supported resources, and nothing of the account's data plane.
SERVICE_ROLE_POLICIES = (
    "arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup",
    "arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForRestores",
)
# What a foreign account needs of a key to copy a recovery point encrypted under it, or into a vault
# encrypted under it (AWS Backup, "Cross-account backup": the key policy shares the key).
KEY_USE = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]


def vault_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:backup:{region}:{account}:backup-vault:{name}"


def shared_key_policy(owner_account: str, user_account: str, purpose: str) -> str:
    """The key's own account administers it; `user_account` may use it, and let AWS services (AWS Backup,
    RDS) hold grants on it for a copy, never grants of its own making."""
    statements: list[dict[str, Any]] = [
        {"Sid": "KeyAdministration", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{owner_account}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": f"UseFor{purpose}", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{user_account}:root"},
         "Action": KEY_USE, "Resource": "*"},
        {"Sid": f"GrantsFor{purpose}", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{user_account}:root"},
         "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"], "Resource": "*",
         "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}},
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


def copy_in_policy(vault: str, source_account: str) -> str:
    """The backup-account vault's access policy: the source account may copy recovery points in."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "CopyFromTheSourceAccount", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{source_account}:root"},
         "Action": "backup:CopyIntoBackupVault", "Resource": vault}]}, sort_keys=True)


def site_account() -> pulumi.Output[str]:
    """The account `pulumi up` deploys this site into (the default provider's)."""
    return aws.get_caller_identity_output().account_id


@dataclass
class AuroraBackupArgs:
    config: AuroraBackup
    stack: str
    region: str
    cluster_arn: pulumi.Input[str]
    # The peer site's vault (the other region): from config on the primary, from the primary stack on a DR site.
    peer_vault_arn: pulumi.Input[str]


class AuroraBackupPlan(pulumi.ComponentResource):
    key: aws.kms.Key
    vault: aws.backup.Vault
    plan: aws.backup.Plan
    role: aws.iam.Role
    account_vault: aws.backup.Vault
    account_lock: aws.backup.VaultLockConfiguration

    def __init__(self, name: str, args: AuroraBackupArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("xai:dr:AuroraBackupPlan", name, None, opts)
        cfg, acct = args.config, args.config.backup_account
        child = pulumi.ResourceOptions(parent=self)
        account = site_account()

        self.key = aws.kms.Key(
            f"{name}-key", description=f"AWS Backup vault {cfg.vault_name}", enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=account.apply(lambda a: shared_key_policy(a, acct.account_id, "BackupAccountCopies")), opts=child)
        self.vault = aws.backup.Vault(f"{name}-vault", name=cfg.vault_name, kms_key_arn=self.key.arn,
                                      opts=pulumi.ResourceOptions(parent=self, protect=True))
        self._backup_account(name, args, account)

        self.role = aws.iam.Role(
            f"{name}-role", name=f"xai-dr-{args.stack}-aws-backup",
            description=f"AWS Backup's service role for the plan of {args.stack}'s Aurora cluster",
            assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "backup.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
            opts=child)
        attachments = [aws.iam.RolePolicyAttachment(f"{name}-role-{arn.rsplit('For', 1)[-1].lower()}", role=self.role.name,
                                                    policy_arn=arn, opts=child)
                       for arn in SERVICE_ROLE_POLICIES]

        def copies(retention_days: int) -> list[aws.backup.PlanRuleCopyActionArgsDict]:
            return [{"destination_vault_arn": args.peer_vault_arn, "lifecycle": {"delete_after": retention_days}},
                    {"destination_vault_arn": self.account_vault.arn, "lifecycle": {"delete_after": acct.retention_days}}]

        self.plan = aws.backup.Plan(
            f"{name}-plan", name=f"xai-dr-{args.stack}-aurora",
            rules=[
                {"rule_name": "continuous", "target_vault_name": self.vault.name, "enable_continuous_backup": True,
                 "lifecycle": {"delete_after": cfg.continuous_retention_days}},
                {"rule_name": "snapshots", "target_vault_name": self.vault.name, "schedule": cfg.snapshot_schedule,
                 "start_window": 60, "completion_window": 480,
                 "lifecycle": {"delete_after": cfg.snapshot_retention_days},
                 "copy_actions": copies(cfg.snapshot_retention_days)},
            ],
            # The copies must find the backup-account vault locked and open to this account.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.account_lock, self.account_policy]))
        self.selection = aws.backup.Selection(
            f"{name}-selection", name=f"{args.stack}-aurora", plan_id=self.plan.id, iam_role_arn=self.role.arn,
            resources=[args.cluster_arn], opts=pulumi.ResourceOptions(parent=self, depends_on=attachments))
        self.register_outputs({"vault": self.vault.name, "plan_id": self.plan.id})

    def _backup_account(self, name: str, args: AuroraBackupArgs, account: pulumi.Output[str]) -> None:
        """The locked vault in the backup account, in this site's region, and its key and access policy."""
        acct = args.config.backup_account
        provider = aws.Provider(
            f"{name}-account", region=args.region, allowed_account_ids=[acct.account_id],
            assume_roles=[{"role_arn": acct.deploy_role_arn, "session_name": f"xai-dr-{args.stack}"}],
            opts=pulumi.ResourceOptions(parent=self))
        there = pulumi.ResourceOptions(parent=self, provider=provider)
        key = aws.kms.Key(
            f"{name}-account-key", description=f"Locked AWS Backup vault {acct.vault_name} (copies of {args.stack})",
            enable_key_rotation=True, deletion_window_in_days=30,
            policy=account.apply(lambda a: shared_key_policy(acct.account_id, a, "CopiesFromTheSource")), opts=there)
        self.account_vault = aws.backup.Vault(
            f"{name}-account-vault", name=acct.vault_name, kms_key_arn=key.arn,
            opts=pulumi.ResourceOptions(parent=self, provider=provider, protect=True))
        self.account_policy = aws.backup.VaultPolicy(
            f"{name}-account-vault-policy", backup_vault_name=self.account_vault.name,
            policy=pulumi.Output.all(self.account_vault.arn, account).apply(lambda v: copy_in_policy(v[0], v[1])),
            opts=there)
        lock = acct.lock
        # changeable_for_days makes it compliance mode (without it: governance, removable by an admin).
        self.account_lock = aws.backup.VaultLockConfiguration(
            f"{name}-account-vault-lock", backup_vault_name=self.account_vault.name,
            changeable_for_days=lock.changeable_for_days, min_retention_days=lock.min_retention_days,
            max_retention_days=lock.max_retention_days,
            opts=pulumi.ResourceOptions(parent=self, provider=provider, protect=True))

    def outputs(self, cfg: AuroraBackup) -> dict[str, Any]:
        """The stack outputs `restore snapshot` and the runbooks read (README "Stack outputs")."""
        return {
            "backup_vault_name": self.vault.name,
            "backup_vault_arn": self.vault.arn,
            "backup_plan_id": self.plan.id,
            "backup_role_arn": self.role.arn,
            "backup_account_id": cfg.backup_account.account_id,
            "backup_account_vault_name": self.account_vault.name,
            "backup_account_vault_arn": self.account_vault.arn,
        }


def key_policy_for_copies(cfg: AuroraBackup) -> pulumi.Output[str]:
    """The Aurora storage key's policy: its snapshots are encrypted under it, so a cross-account copy
    needs the backup account to be able to use it (infra/aurora.py)."""
    return site_account().apply(lambda a: shared_key_policy(a, cfg.backup_account.account_id, "BackupAccountCopies"))


def primary_peer_vault_arn(cfg: AuroraBackup) -> pulumi.Output[str]:
    """The primary names the DR site's vault from config: it never reads its DR stack."""
    assert cfg.peer_region and cfg.peer_vault_name, "validated by stack_config"
    region, vault = cfg.peer_region, cfg.peer_vault_name
    return site_account().apply(lambda a: vault_arn(region, a, vault))
