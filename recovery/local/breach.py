"""A planted compromise for the breach drill (scenario 5), in the local environment only.

The "attacker" holds the emulated account's root credentials (what `local up` deploys with): it
creates an IAM user of its own with an access key, gives it a foothold policy, starts an instance in
the stack's VPC and uses the key against the emulator, so CloudTrail records calls by an identity
the stack does not trust. Nothing here is a detector or a fix: the drill finds the compromise with
`containment.untrusted_key_activity` and removes it with the real runbooks (`contain`, `rotate`,
`investigate`). `remove` takes away only what `plant` made, once the drill is over.

The rogue key's secret stays in this process: it is never printed, logged or put in the record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import ClientError

from recovery.local.deploy import admin_client

USER_PREFIX = "xai-drill-rogue-"
# What the stolen foothold may do: look around (each call lands in CloudTrail with the rogue key).
_FOOTHOLD = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
    "ec2:DescribeInstances", "iam:ListUsers", "secretsmanager:ListSecrets"]}]}


@dataclass
class Compromise:
    user: str
    access_key_id: str
    instance_id: str
    region: str
    _secret: str = field(repr=False, default="")


def _admin(outputs: Any, service: str) -> Any:
    return admin_client(service, outputs.region, outputs.aws_endpoint_url, outputs.aws_ca_bundle)


def _rogue(c: Compromise, outputs: Any, service: str) -> Any:
    return boto3.client(service, region_name=c.region, endpoint_url=outputs.aws_endpoint_url,
                        verify=outputs.aws_ca_bundle or None, aws_access_key_id=c.access_key_id,
                        aws_secret_access_key=c._secret)


def plant(outputs: Any, tag: str) -> Compromise:
    """A rogue user with a used access key, and an instance in the stack's VPC for it to sit on."""
    iam, ec2 = _admin(outputs, "iam"), _admin(outputs, "ec2")
    user = f"{USER_PREFIX}{tag}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="foothold", PolicyDocument=json.dumps(_FOOTHOLD))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [outputs.vpc_id]}])["Subnets"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    inst = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnets[0]["SubnetId"],
                             TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                 {"Key": "Name", "Value": f"xai-drill-compromised-{tag}"}]}])["Instances"][0]
    return Compromise(user, key["AccessKeyId"], inst["InstanceId"], outputs.region, key["SecretAccessKey"])


def use_key(c: Compromise, outputs: Any) -> int:
    """The attacker looks around with the stolen key; returns how many calls were answered."""
    answered = 0
    for service, call in (("ec2", "describe_instances"), ("iam", "list_users"), ("secretsmanager", "list_secrets")):
        try:
            getattr(_rogue(c, outputs, service), call)()
            answered += 1
        except ClientError:
            continue
    return answered


def key_works(c: Compromise, outputs: Any) -> bool:
    """Whether the rogue key is still accepted (after containment it must not be)."""
    try:
        _rogue(c, outputs, "ec2").describe_instances()
        return True
    except ClientError:
        return False


def remove(c: Compromise, outputs: Any) -> None:
    """Delete what `plant` made: the rogue user (keys, policy) and the instance."""
    iam, ec2 = _admin(outputs, "iam"), _admin(outputs, "ec2")
    try:
        for k in iam.list_access_keys(UserName=c.user)["AccessKeyMetadata"]:
            iam.delete_access_key(UserName=c.user, AccessKeyId=k["AccessKeyId"])
        for p in iam.list_user_policies(UserName=c.user)["PolicyNames"]:
            iam.delete_user_policy(UserName=c.user, PolicyName=p)
        iam.delete_user(UserName=c.user)
    except iam.exceptions.NoSuchEntityException:
        pass
    try:
        ec2.terminate_instances(InstanceIds=[c.instance_id])
    except ClientError as exc:
        if "NotFound" not in str(exc.response.get("Error", {}).get("Code")):
            raise
