"""The local environment's on-call identity: an IAM user that may only assume the job roles.

It is what the standard credential chain starts from in the local mode (the `aws-credentials`
file `recovery local up` writes); every command then assumes its job's role (recovery/aws.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

ONCALL_USER = "xai-local-oncall"


@dataclass
class Oncall:
    """The operator's own identity (the base of the standard credential chain) that may assume the job roles."""

    arn: str
    access_key_id: str
    secret_access_key: str

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}


def oncall_identity(d: Any, job_role_arns: list[str]) -> Oncall:
    iam = d.client("iam", "us-east-1")
    user = iam.create_user(UserName=ONCALL_USER)["User"]
    iam.put_user_policy(UserName=ONCALL_USER, PolicyName="assume-recovery-roles", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": sorted(job_role_arns)}]}))
    key = iam.create_access_key(UserName=ONCALL_USER)["AccessKey"]
    return Oncall(user["Arn"], key["AccessKeyId"], key["SecretAccessKey"])



__all__ = ["ONCALL_USER", "Oncall", "oncall_identity"]
