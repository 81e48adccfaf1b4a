"""recovery/local/iam/ against real moto servers: plain boto3 clients over HTTPS
(MotoServer) and, to show aws:SecureTransport is honest, over plain HTTP (ThreadedMotoServer).

All moto servers of a process share its backends and the session server serves other tests, so
every name here is unique and moto is never reset. The authorizer is installed for this module
only. The vault's bucket policy is the one the program renders (infra/backup_vault.py).
"""

from __future__ import annotations

import io
import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from recovery.local import iam as authorizer
from recovery.local.iam import sidecar
from recovery.local.moto_server import MotoServer

INFRA = Path(__file__).resolve().parent.parent / "infra"
if str(INFRA) not in sys.path:
    sys.path.insert(0, str(INFRA))
from backup_vault import vault_policy  # noqa: E402

ACCOUNT = "123456789012"
REGION = "us-east-1"
SFX = uuid.uuid4().hex[:8]
VAULT = f"iamauth-vault-{SFX}"
VAULT_ARN = f"arn:aws:s3:::{VAULT}"
ROLE = f"iamauth-recovery-{SFX}"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"
UNTRUSTING_ROLE = f"iamauth-untrusting-{SFX}"
REPLICATION_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/iamauth-replication-{SFX}"
OPERATOR = f"iamauth-operator-{SFX}"
SESSION = "drill"
SESSION_ARN = f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/{SESSION}"
BIG = 9 * 1024 * 1024  # > boto3's 8 MB multipart threshold


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


@dataclass
class Site:
    server: MotoServer
    records: Path
    key_arn: str
    other_key_arn: str
    secret_arn: str
    other_secret_name: str
    other_secret_arn: str
    health_check: str
    other_health_check: str
    operator_key: dict[str, str]
    session: dict[str, str]

    def root(self, service: str) -> Any:
        return self.server.client(service, REGION)

    def as_session(self, service: str) -> Any:
        return self.client_as(service, self.session)

    def as_operator(self, service: str) -> Any:
        return self.client_as(service, self.operator_key)

    def client_as(self, service: str, creds: dict[str, str]) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.server.endpoint,
                            verify=self.server.ca_bundle, **creds)

    def records_for(self, operation: str) -> list[dict[str, Any]]:
        return [r for r in authorizer.read_records(str(self.records)) if r["operation"] == operation]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    records = tmp_path_factory.mktemp("iam") / "records.jsonl"
    was_installed = authorizer.installed()  # e.g. by whatever else in this process runs moto
    authorizer.install(record_file=str(records))
    server = MotoServer().start()
    try:
        yield _provision(server, records)
    finally:
        server.stop()
        if was_installed:
            authorizer.install()  # as it was, without our record file
        else:
            authorizer.uninstall()


def _provision(server: MotoServer, records: Path) -> Site:
    """As the account root ("testing" key): a vault, two secrets, two health checks, an operator
    user who may assume the recovery role, and a role that does not trust the operator."""
    kms, s3, iam, sm, r53 = (server.client(s, REGION) for s in ("kms", "s3", "iam", "secretsmanager", "route53"))
    key_arn = kms.create_key()["KeyMetadata"]["Arn"]
    other_key_arn = kms.create_key()["KeyMetadata"]["Arn"]
    s3.create_bucket(Bucket=VAULT)
    s3.put_bucket_versioning(Bucket=VAULT, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_policy(Bucket=VAULT, Policy=vault_policy(VAULT_ARN, key_arn, [REPLICATION_ROLE_ARN]))
    secret_arn = sm.create_secret(Name=f"iamauth/{SFX}/db", SecretString="s3cret")["ARN"]
    other_name = f"iamauth/{SFX}/other"
    other_arn = sm.create_secret(Name=other_name, SecretString="other")["ARN"]
    checks = [r53.create_health_check(CallerReference=f"{SFX}-{i}", HealthCheckConfig={
        "Type": "HTTPS", "FullyQualifiedDomainName": "node.example.com", "Port": 443})["HealthCheck"]["Id"]
        for i in range(2)]

    operator_arn = iam.create_user(UserName=OPERATOR)["User"]["Arn"]
    iam.put_user_policy(UserName=OPERATOR, PolicyName="assume", PolicyDocument=_policy(
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": f"arn:aws:iam::{ACCOUNT}:role/iamauth-*"}))
    key = iam.create_access_key(UserName=OPERATOR)["AccessKey"]
    operator_key = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
    iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=_policy(
        {"Effect": "Allow", "Principal": {"AWS": operator_arn}, "Action": "sts:AssumeRole"}))
    iam.put_role_policy(RoleName=ROLE, PolicyName="recovery", PolicyDocument=_policy(
        {"Sid": "Backups", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": f"{VAULT_ARN}/backups/*"},
        {"Sid": "List", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": VAULT_ARN},
        {"Sid": "DbSecret", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": secret_arn},
        {"Sid": "HealthCheck", "Effect": "Allow", "Action": "route53:GetHealthCheck",
         "Resource": f"arn:aws:route53:::healthcheck/{checks[0]}"}))
    iam.create_role(RoleName=UNTRUSTING_ROLE, AssumeRolePolicyDocument=_policy(
        {"Effect": "Allow", "Principal": {"AWS": REPLICATION_ROLE_ARN}, "Action": "sts:AssumeRole"}))

    sts = boto3.client("sts", region_name=REGION, endpoint_url=server.endpoint, verify=server.ca_bundle,
                       **operator_key)
    creds = sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName=SESSION)["Credentials"]
    session = {"aws_access_key_id": creds["AccessKeyId"], "aws_secret_access_key": creds["SecretAccessKey"],
               "aws_session_token": creds["SessionToken"]}
    return Site(server, records, key_arn, other_key_arn, secret_arn, other_name, other_arn, checks[0], checks[1],
                operator_key, session)


def _sse(site: Site, key_arn: str | None = None) -> dict[str, str]:
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_arn or site.key_arn}


def _denied(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    error = excinfo.value.response["Error"]
    return error["Code"], error.get("Message", ""), excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def _no_identity_policy(principal: str, action: str, resource: str) -> str:
    return (f"User: {principal} is not authorized to perform: {action} on resource: {resource} "
            f"because no identity-based policy allows the {action} action")


def _resource_deny(principal: str, action: str, resource: str) -> str:
    return (f"User: {principal} is not authorized to perform: {action} on resource: {resource} "
            "with an explicit deny in a resource-based policy")


# ---- an assumed role: allowed on exactly its resources ---------------------------------------

def test_session_reads_and_writes_only_its_object_prefix(site: Site) -> None:
    s3 = site.as_session("s3")
    s3.put_object(Bucket=VAULT, Key="backups/a", Body=b"a", **_sse(site))
    assert s3.get_object(Bucket=VAULT, Key="backups/a", Range="bytes=0-0")["Body"].read() == b"a"
    assert s3.head_bucket(Bucket=VAULT)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=VAULT, Prefix="backups/")["Contents"]] == ["backups/a"]
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=VAULT, Key="elsewhere/a", Body=b"a", **_sse(site))
    assert _denied(e) == ("AccessDenied",
                          _no_identity_policy(SESSION_ARN, "s3:PutObject", f"{VAULT_ARN}/elsewhere/a"), 403)
    with pytest.raises(ClientError) as e:  # versionId makes it s3:GetObjectVersion, which the role lacks
        version = s3.head_object(Bucket=VAULT, Key="backups/a")["VersionId"]
        s3.get_object(Bucket=VAULT, Key="backups/a", VersionId=version)
    assert "s3:GetObjectVersion" in _denied(e)[1]


def test_session_reads_only_its_secret_named_by_name_or_arn(site: Site) -> None:
    sm = site.as_session("secretsmanager")
    assert sm.get_secret_value(SecretId=site.secret_arn)["SecretString"] == "s3cret"
    assert sm.get_secret_value(SecretId=f"iamauth/{SFX}/db")["SecretString"] == "s3cret"
    with pytest.raises(ClientError) as e:  # a name, resolved to the secret's full ARN
        sm.get_secret_value(SecretId=site.other_secret_name)
    assert _denied(e) == ("AccessDeniedException", _no_identity_policy(
        SESSION_ARN, "secretsmanager:GetSecretValue", site.other_secret_arn), 400)


def test_session_reads_only_its_health_check(site: Site) -> None:
    r53 = site.as_session("route53")
    assert r53.get_health_check(HealthCheckId=site.health_check)["HealthCheck"]["Id"] == site.health_check
    with pytest.raises(ClientError) as e:
        r53.get_health_check(HealthCheckId=site.other_health_check)
    assert _denied(e) == ("AccessDenied", _no_identity_policy(
        SESSION_ARN, "route53:GetHealthCheck", f"arn:aws:route53:::healthcheck/{site.other_health_check}"), 403)


def test_a_presigned_url_carries_the_session(site: Site) -> None:
    s3 = site.as_session("s3")
    context = ssl.create_default_context(cafile=site.server.ca_bundle)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": VAULT, "Key": "backups/a"})
    assert urllib.request.urlopen(url, context=context).read() == b"a"
    other = s3.generate_presigned_url("get_object", Params={"Bucket": VAULT, "Key": "elsewhere/a"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(other, context=context)
    assert e.value.code == 403 and b"<Code>AccessDenied</Code>" in e.value.read()


# ---- the vault's bucket policy, with its conditions ------------------------------------------

def test_deny_insecure_transport_spares_https_and_stops_http(site: Site) -> None:
    from moto.server import ThreadedMotoServer

    site.root("s3").list_objects_v2(Bucket=VAULT)  # HTTPS: aws:SecureTransport is "true"
    plain = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    plain.start()
    try:
        host, port = plain.get_host_and_port()
        s3 = boto3.client("s3", region_name=REGION, endpoint_url=f"http://{host}:{port}",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        with pytest.raises(ClientError) as e:
            s3.list_objects_v2(Bucket=VAULT)
    finally:
        plain.stop()
    assert _denied(e) == ("AccessDenied", _resource_deny(f"arn:aws:iam::{ACCOUNT}:root", "s3:ListBucket",
                                                         VAULT_ARN), 403)
    assert "DenyInsecureTransport" in site.records_for("s3:ListObjectsV2")[-1]["detail"]


def test_uploads_must_be_sse_kms_under_the_vault_key(site: Site) -> None:
    s3 = site.as_session("s3")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=VAULT, Key="backups/plain", Body=b"x")
    assert _denied(e) == ("AccessDenied", _resource_deny(SESSION_ARN, "s3:PutObject", f"{VAULT_ARN}/backups/plain"),
                          403)
    assert "DenyUploadsWithoutKms" in site.records_for("s3:PutObject")[-1]["detail"]
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=VAULT, Key="backups/other-key", Body=b"x", **_sse(site, site.other_key_arn))
    assert "DenyUploadsUnderOtherKeys" in site.records_for("s3:PutObject")[-1]["detail"]
    s3.put_object(Bucket=VAULT, Key="backups/ok", Body=b"x", IfNoneMatch="*", **_sse(site))


def test_multipart_uploads_are_judged_by_their_create_call_encryption(site: Site) -> None:
    s3 = site.as_session("s3")
    s3.upload_fileobj(io.BytesIO(b"x" * BIG), VAULT, "backups/big", ExtraArgs=_sse(site))
    assert s3.head_object(Bucket=VAULT, Key="backups/big")["ContentLength"] == BIG
    for operation in ("s3:CreateMultipartUpload", "s3:UploadPart", "s3:CompleteMultipartUpload"):
        assert site.records_for(operation)[-1]["decision"] == "Allowed", operation
    with pytest.raises(ClientError) as e:
        s3.upload_fileobj(io.BytesIO(b"x" * BIG), VAULT, "backups/big-plain")
    assert _denied(e)[0] == "AccessDenied"
    assert site.records_for("s3:CreateMultipartUpload")[-1]["decision"] == "ExplicitlyDenied"


def test_the_root_is_refused_by_a_bucket_policy_deny(site: Site) -> None:
    s3 = site.root("s3")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=VAULT, Key="root/plain", Body=b"x")
    assert _denied(e) == ("AccessDenied", _resource_deny(f"arn:aws:iam::{ACCOUNT}:root", "s3:PutObject",
                                                         f"{VAULT_ARN}/root/plain"), 403)
    s3.put_object(Bucket=VAULT, Key="root/sse", Body=b"x", **_sse(site))  # ... and allowed without one


def test_a_permissions_boundary_and_a_session_policy_narrow_a_role(site: Site) -> None:
    iam = site.root("iam")
    boundary = iam.create_policy(PolicyName=f"iamauth-boundary-{SFX}", PolicyDocument=_policy(
        {"Effect": "Allow", "Action": ["s3:*", "sts:*"], "Resource": "*"}))["Policy"]["Arn"]
    name = f"iamauth-bounded-{SFX}"
    iam.create_role(RoleName=name, PermissionsBoundary=boundary, AssumeRolePolicyDocument=_policy(
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/{OPERATOR}"},
         "Action": "sts:AssumeRole"}))
    iam.put_role_policy(RoleName=name, PolicyName="all", PolicyDocument=_policy(
        {"Effect": "Allow", "Action": "*", "Resource": "*"}))
    sts = site.as_operator("sts")

    def as_role(**session: Any) -> dict[str, str]:
        c = sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{name}", RoleSessionName="bounded",
                            **session)["Credentials"]
        return {"aws_access_key_id": c["AccessKeyId"], "aws_secret_access_key": c["SecretAccessKey"],
                "aws_session_token": c["SessionToken"]}

    bounded = as_role()
    site.client_as("s3", bounded).head_bucket(Bucket=VAULT)
    with pytest.raises(ClientError) as e:
        site.client_as("secretsmanager", bounded).get_secret_value(SecretId=site.secret_arn)
    assert _denied(e)[1].endswith("because no permissions boundary allows the secretsmanager:GetSecretValue action")
    narrowed = as_role(Policy=_policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}))
    with pytest.raises(ClientError) as e:
        site.client_as("s3", narrowed).list_objects_v2(Bucket=VAULT)
    assert _denied(e)[1].endswith("because no session policy allows the s3:ListBucket action")


# ---- AssumeRole: the caller's identity policy AND the role's trust policy --------------------

def test_assume_role_needs_the_trust_policy_to_name_the_caller(site: Site) -> None:
    sts = site.as_operator("sts")
    untrusting = f"arn:aws:iam::{ACCOUNT}:role/{UNTRUSTING_ROLE}"
    with pytest.raises(ClientError) as e:
        sts.assume_role(RoleArn=untrusting, RoleSessionName="xx")
    operator = f"arn:aws:iam::{ACCOUNT}:user/{OPERATOR}"
    assert _denied(e) == ("AccessDenied", f"User: {operator} is not authorized to perform: sts:AssumeRole on "
                          f"resource: {untrusting} because no resource-based policy allows the sts:AssumeRole "
                          "action", 403)
    assert site.as_session("sts").get_caller_identity()["Arn"] == SESSION_ARN  # always allowed


# ---- records, protocols, credentials ---------------------------------------------------------

def test_records_name_principal_action_resource_and_decision(site: Site) -> None:
    site.as_session("s3").get_object(Bucket=VAULT, Key="backups/a")
    record = site.records_for("s3:GetObject")[-1]
    assert {k: record[k] for k in ("principal", "principal_arn", "action", "resource", "region", "decision",
                                   "unmapped")} == {
        "principal": SESSION_ARN, "principal_arn": ROLE_ARN, "action": "s3:GetObject",
        "resource": f"{VAULT_ARN}/backups/a", "region": REGION, "decision": "Allowed", "unmapped": False}
    assert record["detail"] == "allowed by recovery:Backups"
    head = site.records_for("s3:HeadBucket")[-1]
    assert (head["action"], head["resource"]) == ("s3:ListBucket", VAULT_ARN)

    with pytest.raises(ClientError):  # not in the tables: service:Operation on "*", marked unmapped
        site.as_session("rds").describe_db_subnet_groups()
    unmapped = site.records_for("rds:DescribeDBSubnetGroups")[-1]
    assert (unmapped["action"], unmapped["resource"], unmapped["decision"], unmapped["unmapped"]) == (
        "rds:DescribeDBSubnetGroups", "*", "ImplicitlyDenied", True)


def test_each_protocol_gets_its_aws_error(site: Site) -> None:
    cluster_arn = f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:*"
    with pytest.raises(ClientError) as e:  # query protocol; a list call is evaluated on cluster:*
        site.as_session("rds").describe_db_clusters()
    assert _denied(e) == ("AccessDenied", _no_identity_policy(SESSION_ARN, "rds:DescribeDBClusters",
                                                              cluster_arn), 403)
    with pytest.raises(ClientError) as e:  # json protocol, and CloudWatch's scope is `monitoring`
        site.as_session("cloudwatch").list_metrics()
    assert _denied(e) == ("AccessDeniedException",
                          _no_identity_policy(SESSION_ARN, "cloudwatch:ListMetrics", "*"), 400)
    with pytest.raises(ClientError) as e:  # EC2 says UnauthorizedOperation, as AWS does
        site.as_session("ec2").describe_instances()
    assert _denied(e)[0] == "UnauthorizedOperation" and _denied(e)[2] == 403


def test_ec2_vpc_condition_scopes_a_security_group_action(site: Site) -> None:
    # ec2:Vpc comes from moto's EC2 backend. (AWS defines it for security groups, network
    # interfaces and subnets, not for instances: a TerminateInstances policy cannot use it.)
    ec2, iam = site.root("ec2"), site.root("iam")
    groups = {}
    for n in (71, 72):
        vpc = ec2.create_vpc(CidrBlock=f"10.{n}.0.0/16")["Vpc"]["VpcId"]
        groups[vpc] = ec2.create_security_group(GroupName=f"iamauth-{SFX}-{n}", Description="t", VpcId=vpc)["GroupId"]
    inside, outside = groups
    user = f"iamauth-ec2-{SFX}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="one-vpc", PolicyDocument=_policy(
        {"Effect": "Allow", "Action": "ec2:RevokeSecurityGroupEgress", "Resource": "*",
         "Condition": {"ArnEquals": {"ec2:Vpc": f"arn:aws:ec2:{REGION}:{ACCOUNT}:vpc/{inside}"}}}))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    as_user = site.client_as("ec2", {"aws_access_key_id": key["AccessKeyId"],
                                   "aws_secret_access_key": key["SecretAccessKey"]})
    everything = [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    as_user.revoke_security_group_egress(GroupId=groups[inside], IpPermissions=everything)
    with pytest.raises(ClientError) as e:
        as_user.revoke_security_group_egress(GroupId=groups[outside], IpPermissions=everything)
    assert f"security-group/{groups[outside]}" in _denied(e)[1]


def test_a_deactivated_key_is_refused(site: Site) -> None:
    iam = site.root("iam")
    user = f"iamauth-deactivated-{SFX}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="all", PolicyDocument=_policy(
        {"Effect": "Allow", "Action": "*", "Resource": "*"}))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    sts = site.client_as("sts", {"aws_access_key_id": key["AccessKeyId"],
                                 "aws_secret_access_key": key["SecretAccessKey"]})
    assert sts.get_caller_identity()["Arn"].endswith(f":user/{user}")
    iam.update_access_key(UserName=user, AccessKeyId=key["AccessKeyId"], Status="Inactive")
    with pytest.raises(ClientError) as e:
        sts.get_caller_identity()
    assert _denied(e)[0] == "InvalidClientTokenId"


# ---- the sidecar itself ----------------------------------------------------------------------

def test_the_sidecar_answers_bad_input_and_keeps_going() -> None:
    lines = ["not json",
             json.dumps({"id": 1, "request": {"principal": f"arn:aws:iam::{ACCOUNT}:root", "action": "s3:GetObjct",
                                              "resource": {"resource": "arn:aws:s3:::b/k", "accountId": ACCOUNT}}}),
             json.dumps({"id": 2, "request": {"principal": f"arn:aws:iam::{ACCOUNT}:root", "action": "s3:GetObject",
                                              "resource": {"resource": "not-an-arn", "accountId": ACCOUNT}}}),
             json.dumps({"id": 3, "request": {"principal": f"arn:aws:iam::{ACCOUNT}:root", "action": "s3:GetObject",
                                              "resource": {"resource": "arn:aws:s3:::b/k", "accountId": ACCOUNT}},
                         "identityPolicies": [{"name": "p", "policy": json.loads(_policy(
                             {"Sid": "Get", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}))}]})]
    out = subprocess.run(["node", str(authorizer.EVALUATOR_DIR / "simulate.mjs")], input="\n".join(lines),
                         capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    answers = [json.loads(line) for line in out]
    assert [a.get("invalid", False) for a in answers] == [True, True, True, False]
    assert "unknown action s3:GetObjct" in answers[1]["detail"]
    assert "not-an-arn" in answers[2]["detail"]
    assert answers[3] == {"id": 3, "decision": "Allowed", "detail": "allowed by p:Get"}


def test_the_sidecar_is_restarted_when_it_dies(site: Site) -> None:
    sm = site.as_session("secretsmanager")
    sm.get_secret_value(SecretId=site.secret_arn)
    sidecar._SIDECAR._proc.kill()  # type: ignore[union-attr]  # as if node crashed
    assert sm.get_secret_value(SecretId=site.secret_arn)["SecretString"] == "s3cret"


def test_install_says_what_is_missing_and_how_to_fix_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sidecar, "EVALUATOR_DIR", tmp_path)
    with pytest.raises(RuntimeError, match=r"node_modules is missing; run `make venv`"):
        authorizer.install()
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"`node` \(Node.js 20\+\) is not on PATH.*`make venv`"):
        authorizer.install()
