"""EC2/IAM/CloudTrail containment adapter, and the incident record in the stack's bucket.

What `recovery contain`, `contain terminate` and `investigate` do to AWS, one call (or one verified
group of calls) per method: find an instance and its interfaces, put every interface into the
quarantine group, image and snapshot the evidence, deactivate access keys, deny old sessions of a
role, keep the trail logging, terminate, look events up. No method prints or reads options; each
failure is a RecoveryError subclass with the line an operator sees.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from recovery.aws import aws_error, client, error_code
from recovery.errors import DeadlineError, TrailMissingError, UnknownInstanceError, UnknownUserError

QUARANTINE_GROUP = "xai-quarantine"
INCIDENT_TAG = "xai:incident-id"


def record_key(incident_id: str, name: str = "record.json") -> str:
    return f"incidents/{incident_id}/{name}"


def volumes(inst: dict[str, Any]) -> list[str]:
    return sorted(m["Ebs"]["VolumeId"] for m in inst.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("VolumeId"))


def group_ids(eni: dict[str, Any]) -> list[str]:
    return [g["GroupId"] for g in eni.get("Groups", [])]


class IncidentRecord:
    """``s3://<bucket>/incidents/<id>/``: the record (JSON) and the reports beside it."""

    def __init__(self, region: str, bucket: str, incident_id: str) -> None:
        self.bucket = bucket
        self.id = incident_id
        self.s3 = client("s3", region)

    def url(self, name: str = "record.json") -> str:
        return f"s3://{self.bucket}/{record_key(self.id, name)}"

    def load(self) -> dict[str, Any] | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=record_key(self.id))["Body"].read()
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise aws_error(exc, f"reading incident record {self.id}", bucket=self.bucket) from None
        return dict(json.loads(body))

    def save(self, record: dict[str, Any], now: str) -> str:
        record["updated_at"] = now
        self.put("record.json", json.dumps(record, indent=2, sort_keys=True, default=str), "application/json")
        return self.url()

    def put(self, name: str, text: str, content_type: str) -> None:
        key = record_key(self.id, name)
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=text.encode(), ContentType=content_type)
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"writing s3://{self.bucket}/{key}", bucket=self.bucket) from None


class ContainmentApi:
    """The EC2, IAM and CloudTrail calls of containment in one region, tagged with one incident id."""

    def __init__(self, region: str, incident_id: str) -> None:
        self.region = region
        self.id = incident_id
        self.ec2 = client("ec2", region)
        self.iam = client("iam", region)
        self.ct = client("cloudtrail", region)

    # -- instances and identities ----------------------------------------------------------
    def instance(self, instance_id: str) -> dict[str, Any]:
        try:
            res = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        except Exception as exc:  # noqa: BLE001
            if error_code(exc).startswith("InvalidInstanceID"):
                raise UnknownInstanceError(f"instance {instance_id} does not exist in {self.region}",
                                           "check the instance id and the stack (region)") from None
            raise aws_error(exc, f"describing instance {instance_id}") from None
        if not res or not res[0]["Instances"]:
            raise UnknownInstanceError(f"instance {instance_id} does not exist in {self.region}",
                                       "check the instance id and the stack (region)")
        return dict(res[0]["Instances"][0])

    def require_user(self, user: str) -> None:
        try:
            self.iam.get_user(UserName=user)
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) == "NoSuchEntity":
                raise UnknownUserError(f"IAM user '{user}' does not exist", "check the --user names") from None
            raise aws_error(exc, f"looking up IAM user {user}") from None

    def terminate(self, instance_id: str) -> None:
        try:
            self.ec2.terminate_instances(InstanceIds=[instance_id])
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"terminating {instance_id}") from None

    # -- network ---------------------------------------------------------------------------
    def interfaces(self, instance_id: str) -> list[dict[str, Any]]:
        try:
            enis = self.ec2.describe_network_interfaces(
                Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}])["NetworkInterfaces"]
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"listing the network interfaces of {instance_id}") from None
        return sorted(enis, key=lambda e: e["NetworkInterfaceId"])

    def find_group(self, vpc_id: str) -> dict[str, Any] | None:
        try:
            groups = self.ec2.describe_security_groups(Filters=[
                {"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": [QUARANTINE_GROUP]}])["SecurityGroups"]
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"looking up security group {QUARANTINE_GROUP} in {vpc_id}") from None
        return dict(groups[0]) if groups else None

    def isolate(self, instance_id: str, vpc_id: str) -> tuple[str, bool, int]:
        """Create or reuse the quarantine group, strip its rules, make it every interface's only group.

        Returns (group id, created?, interfaces changed)."""
        ec2 = self.ec2
        try:
            group = self.find_group(vpc_id)
            created = group is None
            if group is None:
                gid = ec2.create_security_group(
                    GroupName=QUARANTINE_GROUP, VpcId=vpc_id,
                    Description="Incident quarantine: no ingress, no egress (recovery contain)",
                    TagSpecifications=[{"ResourceType": "security-group", "Tags": [
                        {"Key": "xai:purpose", "Value": "quarantine"}]}])["GroupId"]
                group = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]
            gid = group["GroupId"]
            if group.get("IpPermissions"):
                ec2.revoke_security_group_ingress(GroupId=gid, IpPermissions=group["IpPermissions"])
            if group.get("IpPermissionsEgress"):  # the default allow-all egress rule
                ec2.revoke_security_group_egress(GroupId=gid, IpPermissions=group["IpPermissionsEgress"])
            enis = self.interfaces(instance_id)
            for eni in enis:
                # per interface: setting the instance's groups alone can leave an interface in its old ones
                ec2.modify_network_interface_attribute(NetworkInterfaceId=eni["NetworkInterfaceId"], Groups=[gid])
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"isolating {instance_id}") from None
        return gid, created, len(enis)

    # -- evidence --------------------------------------------------------------------------
    def tags(self, instance_id: str) -> list[dict[str, str]]:
        return [{"Key": INCIDENT_TAG, "Value": self.id}, {"Key": "xai:instance-id", "Value": instance_id}]

    def image_name(self, instance_id: str) -> str:
        return f"forensic-{self.id}-{instance_id}"[:128]

    def find_image(self, instance_id: str) -> dict[str, Any] | None:
        for filters in ([{"Name": f"tag:{INCIDENT_TAG}", "Values": [self.id]},
                         {"Name": "tag:xai:instance-id", "Values": [instance_id]}],
                        [{"Name": "name", "Values": [self.image_name(instance_id)]}]):
            try:
                images = self.ec2.describe_images(Owners=["self"], Filters=filters)["Images"]
            except Exception as exc:  # noqa: BLE001
                raise aws_error(exc, f"looking up the forensic image of {instance_id}") from None
            if images:
                return dict(sorted(images, key=lambda i: i.get("CreationDate", ""))[0])
        return None

    def find_snapshot(self, volume_id: str) -> dict[str, Any] | None:
        try:
            snaps = self.ec2.describe_snapshots(OwnerIds=["self"], Filters=[
                {"Name": f"tag:{INCIDENT_TAG}", "Values": [self.id]},
                {"Name": "volume-id", "Values": [volume_id]}])["Snapshots"]
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"looking up the forensic snapshot of {volume_id}") from None
        return dict(snaps[0]) if snaps else None

    def preserve(self, instance_id: str, image: dict[str, Any] | None, snaps: dict[str, dict[str, Any] | None],
                 vols: list[str]) -> tuple[str, dict[str, str]]:
        """Image (NoReboot) and snapshot each volume unless found; returns (image id, volume -> snapshot id)."""
        ec2, tags = self.ec2, self.tags(instance_id)
        try:
            if image is None:
                image_id = ec2.create_image(InstanceId=instance_id, Name=self.image_name(instance_id), NoReboot=True,
                                            Description=f"forensic image, incident {self.id}",
                                            TagSpecifications=[{"ResourceType": "image", "Tags": tags}])["ImageId"]
                ec2.create_tags(Resources=[image_id], Tags=tags)  # also where TagSpecifications is unsupported
            else:
                image_id = image["ImageId"]
            snap_ids: dict[str, str] = {}
            for vol in vols:
                s = snaps.get(vol)
                if s is None:
                    sid = ec2.create_snapshot(VolumeId=vol, Description=f"forensic snapshot, incident {self.id}",
                                              TagSpecifications=[{"ResourceType": "snapshot", "Tags": tags}])["SnapshotId"]
                else:
                    sid = s["SnapshotId"]
                snap_ids[vol] = sid
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"preserving evidence of {instance_id}") from None
        return image_id, snap_ids

    def wait_evidence(self, instance_id: str, image_id: str, snapshot_ids: list[str], timeout_s: float,
                      poll_s: float) -> None:
        wait = {"Delay": max(1, int(poll_s)), "MaxAttempts": max(1, int(timeout_s / max(1, poll_s)))}
        try:
            self.ec2.get_waiter("image_available").wait(ImageIds=[image_id], WaiterConfig=wait)
            if snapshot_ids:
                self.ec2.get_waiter("snapshot_completed").wait(SnapshotIds=snapshot_ids, WaiterConfig=wait)
        except Exception as exc:  # noqa: BLE001
            if type(exc).__name__ == "WaiterError":
                raise DeadlineError(f"the forensic image/snapshots of {instance_id} were not ready in {timeout_s:g}s",
                                    "rerun the same command to keep waiting (nothing is created twice)") from None
            raise aws_error(exc, f"preserving evidence of {instance_id}") from None

    # -- credentials -----------------------------------------------------------------------
    def access_keys(self, user: str) -> list[dict[str, Any]]:
        try:
            return list(self.iam.list_access_keys(UserName=user)["AccessKeyMetadata"])
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"listing the access keys of {user}") from None

    def role_policy_names(self, role: str) -> list[str]:
        try:
            return list(self.iam.list_role_policies(RoleName=role)["PolicyNames"])
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"listing the inline policies of role {role}") from None

    def revoke(self, users: list[str], roles: list[str], policy_name: str, cutoff: str, delete_keys: bool,
               done: list[dict[str, str]]) -> None:
        """Deactivate (and with ``delete_keys`` delete) every key of ``users``, appending each to ``done``
        as it goes; on each of ``roles`` a deny-all policy for sessions issued before ``cutoff``."""
        iam = self.iam
        try:
            for user in users:
                for k in self.access_keys(user):
                    if k["Status"] != "Inactive":
                        iam.update_access_key(UserName=user, AccessKeyId=k["AccessKeyId"], Status="Inactive")
                    action = "deactivated"
                    if delete_keys:
                        iam.delete_access_key(UserName=user, AccessKeyId=k["AccessKeyId"])
                        action = "deactivated+deleted"
                    done.append({"user": user, "access_key_id": k["AccessKeyId"], "action": action})
            doc = {"Version": "2012-10-17", "Statement": [{
                "Sid": "RevokeSessionsIssuedBeforeContainment", "Effect": "Deny", "Action": "*", "Resource": "*",
                "Condition": {"DateLessThan": {"aws:TokenIssueTime": cutoff}}}]}
            for role in roles:
                iam.put_role_policy(RoleName=role, PolicyName=policy_name, PolicyDocument=json.dumps(doc))
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, "revoking credentials") from None

    # -- the trail -------------------------------------------------------------------------
    def trail_logging(self, trail: str) -> bool:
        try:
            return bool(self.ct.get_trail_status(Name=trail).get("IsLogging"))
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) in ("TrailNotFoundException", "ResourceNotFoundException"):
                raise TrailMissingError(f"the stack's trail '{trail}' does not exist",
                                        "create it (pulumi up) before containment so the forensic log is kept") from None
            raise aws_error(exc, f"reading the status of trail {trail}") from None

    def start_logging(self, trail: str) -> None:
        try:
            self.ct.start_logging(Name=trail)
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"starting trail {trail}") from None

    def lookup_events(self, key: str, value: str, start: datetime) -> list[dict[str, Any]]:
        try:
            pages = self.ct.get_paginator("lookup_events").paginate(
                LookupAttributes=[{"AttributeKey": key, "AttributeValue": value}], StartTime=start)
            return [e for page in pages for e in page.get("Events", [])]
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"looking up CloudTrail events for {value}") from None
