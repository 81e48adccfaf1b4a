"""Issue 16, item 1: the AWS Backup plan of each site's Aurora cluster (infra/aurora_backup.py).

Under Pulumi's mocks: the rules, the copies (to the peer site's vault and to a Vault-Locked vault of the
backup account, in the site's region), the keys those copies need and the selection. The policy pack
rule (policy/backup_rules.py) passes both stacks and fails when the lock is removed or weakened. And
the deploy into the emulator makes the locked vault in the backup account, not in the source one.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from recovery.local import deploy
from recovery.local.deploy_backup import in_account

from conftest import ROOT
import test_policy
from test_policy import Stacks, check_stack, policy_resources, res

infra_runs = pytest.importorskip("infra_runs")
import backup_rules  # noqa: E402 - policy/, on sys.path by test_policy
import stack_config  # noqa: E402 - infra/, on sys.path by infra_runs

BACKUP_ACCOUNT = "210987654321"
SITES = {"production": ("us-east-1", "production-dr"), "production-dr": ("us-west-2", "production")}


def one(stack: str, name: str) -> Any:
    return next(r for r in infra_runs.run(stack).resources if r.name == name)


def statements(policy: str) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in json.loads(policy)["Statement"]}


@pytest.mark.parametrize("stack", sorted(SITES))
def test_the_plan_keeps_pitr_and_daily_snapshots_and_copies_each_to_both_places(stack: str) -> None:
    region, peer = SITES[stack]
    out, peer_out = infra_runs.run(stack).outputs, infra_runs.run(peer).outputs
    continuous, snapshots = one(stack, "aurora-backup-plan").inputs["rules"]
    assert continuous["enableContinuousBackup"] is True and continuous["lifecycle"] == {"deleteAfter": 35}
    assert continuous["targetVaultName"] == out["backup_vault_name"] and "copyActions" not in continuous
    assert (snapshots["schedule"], snapshots["lifecycle"]) == ("cron(0 5 ? * * *)", {"deleteAfter": 30})
    copies = {c["destinationVaultArn"]: c["lifecycle"]["deleteAfter"] for c in snapshots["copyActions"]}
    # The peer site's vault (the other region, this account) and the backup account's (this region).
    assert copies == {peer_out["backup_vault_arn"]: 30, out["backup_account_vault_arn"]: 90}
    assert out["backup_account_vault_arn"] == (f"arn:aws:backup:{region}:{BACKUP_ACCOUNT}:backup-vault:"
                                               f"{out['backup_account_vault_name']}")
    assert out["backup_account_id"] == BACKUP_ACCOUNT
    selection = one(stack, "aurora-backup-selection").inputs
    assert selection["resources"] == [out["db_cluster_arn"]] and selection["iamRoleArn"] == out["backup_role_arn"]
    assert selection["planId"] == out["backup_plan_id"]


@pytest.mark.parametrize("stack", sorted(SITES))
def test_the_backup_account_vault_is_locked_in_compliance_mode_there(stack: str) -> None:
    vault, lock = one(stack, "aurora-backup-account-vault"), one(stack, "aurora-backup-account-vault-lock")
    assert (vault.account, lock.account) == (BACKUP_ACCOUNT, BACKUP_ACCOUNT)
    assert vault.region == SITES[stack][0] and vault.protect and lock.protect
    assert {k: lock.inputs[k] for k in ("backupVaultName", "changeableForDays", "minRetentionDays", "maxRetentionDays")} == {
        "backupVaultName": vault.inputs["name"], "changeableForDays": 3, "minRetentionDays": 30, "maxRetentionDays": 365}
    copy_in = statements(one(stack, "aurora-backup-account-vault-policy").inputs["policy"])["CopyFromTheSourceAccount"]
    assert copy_in["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    assert (copy_in["Action"], copy_in["Resource"]) == ("backup:CopyIntoBackupVault", vault.outputs["arn"])
    # The site's own resources stay in the site's account.
    assert one(stack, "aurora-backup-vault").account == one(stack, "aurora-backup-plan").account == "123456789012"


@pytest.mark.parametrize("stack", sorted(SITES))
def test_the_keys_let_each_account_use_the_others_for_the_copies(stack: str) -> None:
    def use(key: str, sid: str) -> tuple[str, str]:
        s = statements(one(stack, key).inputs["policy"])
        assert s["KeyAdministration"]["Action"] == "kms:*"
        assert "kms:Decrypt" in s[sid]["Action"] and "kms:GenerateDataKey*" in s[sid]["Action"]
        grants = s[sid.replace("UseFor", "GrantsFor")]
        assert grants["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
        return s["KeyAdministration"]["Principal"]["AWS"], s[sid]["Principal"]["AWS"]

    source, backup = "arn:aws:iam::123456789012:root", f"arn:aws:iam::{BACKUP_ACCOUNT}:root"
    # Aurora snapshots are encrypted under the cluster's key: a cross-account copy needs it shared.
    assert use("database-key", "UseForBackupAccountCopies") == (source, backup)
    assert use("aurora-backup-key", "UseForBackupAccountCopies") == (source, backup)
    assert use("aurora-backup-account-key", "UseForCopiesFromTheSource") == (backup, source)
    assert one(stack, "aurora-backup-vault").inputs["kmsKeyArn"] == one(stack, "aurora-backup-key").outputs["arn"]


def test_aws_backup_runs_as_a_service_role_with_the_managed_policies() -> None:
    role = one("production", "aurora-backup-role").inputs
    assert json.loads(role["assumeRolePolicy"])["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "backup.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    attached = {r.inputs["policyArn"] for r in infra_runs.run("production").of_type(
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
    assert attached == {f"arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyFor{k}" for k in ("Backup", "Restores")}


def test_both_committed_plans_show_the_locked_vault() -> None:
    for stack, (region, _) in SITES.items():
        plan = (ROOT / "plans" / f"{stack}.txt").read_text()
        assert f"aws:backup/vaultLockConfiguration:VaultLockConfiguration  aurora-backup-account-vault-lock  [{region}]" in plan
        assert "    changeableForDays: 3" in plan
        assert f"aurora-backup-account-vault  [{region}]\n    (in account {BACKUP_ACCOUNT}, through a provider pinned to it)" in plan
        assert f"backup_account_vault_arn: \"arn:aws:backup:{region}:{BACKUP_ACCOUNT}:" in plan


@pytest.mark.parametrize(("path", "value", "expect"), [
    (("backupAccount", "lock", "changeableForDays"), None, "auroraBackup.backupAccount.lock.changeableForDays is missing"),
    (("backupAccount", "lock", "changeableForDays"), 1, "expected days >= 3"),
    (("backupAccount", "retentionDays"), 400, "is outside the lock's 30..365 days"),
    (("continuousRetentionDays",), 36, "1..35 days (AWS's cap)"),
    (("backupAccount", "accountId"), 210987654321, "must be a string"),
    (("backupAccount", "deployRoleArn"), "arn:aws:iam::123456789012:role/x", "a role ARN in account 210987654321"),
    (("peerRegion",), "us-east-1", "the DR region, not us-east-1"),
])
def test_bad_config_names_the_key(path: tuple[str, ...], value: Any, expect: str) -> None:
    raw = {k.split(":", 1)[1]: v for k, v in json.loads(json.dumps(infra_runs.offline.stack_config("production"))).items()
           if k.startswith("xai-dr:")}
    node = raw["auroraBackup"]
    for key in path[:-1]:
        node = node[key]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    with pytest.raises(stack_config.ConfigError) as err:
        stack_config.load(raw, stack="production", region="us-east-1")
    assert expect in str(err.value) and "Pulumi.production.yaml" in str(err.value)


# ------------------------------------------------------------------------------------------ policy

RULE = backup_rules.BACKUP_ACCOUNT_VAULT_LOCKED
stack_resources = test_policy.stacks  # the fixture: what both stacks register, as the analyzer sees it


def without_types(registered: Any, *types: str) -> Any:
    return [r for r in registered if r[0] not in types]


def changed(registered: Any, name: str, drop: str = "", **changes: Any) -> Any:
    return [(t, n, u, {**{k: v for k, v in p.items() if k != drop}, **changes} if n == name else p, reg)
            for t, n, u, p, reg in registered]


def messages(registered: Any) -> list[str]:
    return [m for _, m in check_stack(RULE, policy_resources(registered))]


@pytest.mark.parametrize("stack", sorted(SITES))
def test_the_lock_rule_passes_the_program_and_fails_without_the_lock(stack_resources: Stacks, stack: str) -> None:
    registered = stack_resources[stack]
    assert messages(registered) == []
    unlocked = messages(without_types(registered, backup_rules.BACKUP_VAULT_LOCK))
    assert len(unlocked) == 1 and unlocked[0].startswith("backup-account vault xai-production") and "has no Vault Lock" in unlocked[0]
    governance = messages(changed(registered, "aurora-backup-account-vault-lock", drop="changeableForDays"))
    assert len(governance) == 1 and "governance mode (no changeableForDays)" in governance[0]
    unbounded = messages(changed(registered, "aurora-backup-account-vault-lock", drop="minRetentionDays"))
    assert len(unbounded) == 1 and "sets no minRetentionDays" in unbounded[0]


def test_the_lock_rule_fails_a_plan_that_keeps_every_copy_at_home(stack_resources: Stacks) -> None:
    registered = stack_resources["production"]
    plan = next(p for t, n, _, p, _ in registered if n == "aurora-backup-plan")
    home = [{**rule, "copyActions": [c for c in rule.get("copyActions", []) if BACKUP_ACCOUNT not in c["destinationVaultArn"]]}
            for rule in plan["rules"]]
    assert messages(changed(registered, "aurora-backup-plan", rules=home)) == [
        "backup plan xai-dr-production-aurora copies to no vault in another account: every recovery point stays "
        "where stolen admin credentials can delete it"]
    unselected = messages(without_types(registered, backup_rules.BACKUP_SELECTION))
    assert unselected == ["Aurora cluster xai-blockchain-db-cluster is in no AWS Backup selection: it has no recovery "
                          "point outside Aurora's own"]


def test_the_lock_rule_tolerates_a_first_preview() -> None:
    from test_policy import UNKNOWN_STR

    vault = res(backup_rules.BACKUP_VAULT, "v", {"name": "locked", "arn": UNKNOWN_STR})
    plan = res(backup_rules.BACKUP_PLAN, "p", {"name": "p", "arn": UNKNOWN_STR, "rules": [
        {"ruleName": "snapshots", "copyActions": [{"destinationVaultArn": UNKNOWN_STR}]}]}, {"rules": [vault]})
    assert check_stack(RULE, [vault, plan]) == []
    bare = res(backup_rules.BACKUP_PLAN, "p", {"name": "p", "arn": UNKNOWN_STR, "rules": [
        {"ruleName": "snapshots", "copyActions": [{"destinationVaultArn": UNKNOWN_STR}]}]})
    assert check_stack(RULE, [vault, bare]) == []  # no dependency information: nothing to prove either way
    # The lock is still tied to the vault by name: a removed one is not hidden by an unknown ARN.
    known = res(backup_rules.BACKUP_VAULT, "v", {"name": "locked", "arn": "arn:aws:backup:us-east-1:210987654321:backup-vault:locked"})
    own = res(backup_rules.BACKUP_PLAN, "p", {"name": "p", "arn": "arn:aws:backup:us-east-1:123456789012:backup-plan:1",
                                            "rules": [{"copyActions": [{"destinationVaultArn": known.props["arn"]}]}]})
    lock = res(backup_rules.BACKUP_VAULT_LOCK, "l", {"backupVaultName": UNKNOWN_STR, "changeableForDays": 3.0,
                                                    "minRetentionDays": 30.0}, {"backupVaultName": [known]})
    assert check_stack(RULE, [known, own, lock]) == []
    assert "has no Vault Lock" in check_stack(RULE, [known, own])[0][1]


# -------------------------------------------------------------------------------------- emulator

def test_the_deploy_makes_the_locked_vault_in_the_backup_account(moto_server: Any) -> None:
    moto_server.reset()
    out = deploy.deploy(moto_server.endpoint, ca_bundle=moto_server.ca_bundle).outputs[deploy.PRIMARY]
    account = out["backup_account_id"]
    assert account == "111122223333"
    source = moto_server.client("backup", "us-east-1")
    there = in_account(moto_server.client("backup", "us-east-1"), account)
    locked = there.describe_backup_vault(BackupVaultName=out["backup_account_vault_name"])
    assert (locked["BackupVaultArn"], locked["Locked"], locked["MinRetentionDays"], locked["MaxRetentionDays"]) == (
        out["backup_account_vault_arn"], True, 30, 365)
    assert "LockDate" in locked  # compliance mode: immutable from then on
    assert out["backup_account_vault_name"] not in {v["BackupVaultName"] for v in source.list_backup_vaults()["BackupVaultList"]}
    policy = json.loads(there.get_backup_vault_access_policy(BackupVaultName=out["backup_account_vault_name"])["Policy"])
    assert policy["Statement"][0]["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    plan = source.get_backup_plan(BackupPlanId=out["backup_plan_id"])["BackupPlan"]
    assert [r["RuleName"] for r in plan["Rules"]] == ["continuous", "snapshots"]
    assert {c["DestinationBackupVaultArn"] for c in plan["Rules"][1]["CopyActions"]} == {
        out["backup_account_vault_arn"], f"arn:aws:backup:us-west-2:123456789012:backup-vault:{out['backup_vault_name'].replace('local', 'local-dr')}"}
    selections = source.list_backup_selections(BackupPlanId=out["backup_plan_id"])["BackupSelectionsList"]
    assert [(s["SelectionName"], s["IamRoleArn"]) for s in selections] == [("local-aurora", out["backup_role_arn"])]
    chosen = source.get_backup_selection(BackupPlanId=out["backup_plan_id"], SelectionId=selections[0]["SelectionId"])
    assert chosen["BackupSelection"]["Resources"] == [out["db_cluster_arn"]]
    attached = moto_server.client("iam").list_attached_role_policies(RoleName=out["backup_role_arn"].rsplit("/", 1)[-1])
    assert len(attached["AttachedPolicies"]) == 2


def test_the_emulator_refuses_what_aws_refuses(moto_server: Any) -> None:
    backup = moto_server.client("backup", "eu-west-1")
    with pytest.raises(ClientError) as err:
        backup.create_backup_selection(BackupPlanId="nope", BackupSelection={
            "SelectionName": "s", "IamRoleArn": "arn:aws:iam::123456789012:role/r", "Resources": ["arn:aws:rds:x"]})
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    plan = backup.create_backup_plan(BackupPlan={"BackupPlanName": "refusals", "Rules": [
        {"RuleName": "r", "TargetBackupVaultName": "v"}]})["BackupPlanId"]
    with pytest.raises(ClientError) as err:
        backup.create_backup_selection(BackupPlanId=plan, BackupSelection={
            "SelectionName": "s", "IamRoleArn": "arn:aws:iam::123456789012:role/r"})
    assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"
    with pytest.raises(ClientError) as err:
        backup.put_backup_vault_access_policy(BackupVaultName="absent", Policy="{}")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    backup.create_backup_vault(BackupVaultName="refusals")
    with pytest.raises(ClientError) as err:
        backup.put_backup_vault_access_policy(BackupVaultName="refusals", Policy="not json")
    assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"
