"""Each moto extension of recovery/local/emulator/, observed through plain boto3 calls
against a real ThreadedMotoServer over HTTP.

All moto servers in a process share the same backends, and the session server of conftest.py
may hold other tests' state, so these tests never reset moto: they use unique names, and
uninstall the extensions afterwards.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import time
import uuid
from typing import Any, Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from recovery.adapters import aurora
from recovery.local import emulator as ext
from recovery.local.moto_server import MotoServer

ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def server() -> Iterator[MotoServer]:
    was_installed = ext.installed()  # moto_server.py may install them for every server
    ext.install()
    ext.install()  # idempotent
    srv = MotoServer().start()
    yield srv
    srv.stop()
    if not was_installed:
        ext.uninstall()


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------------------- S3 replication

def _replicated_pair(server: MotoServer, rules: list[dict[str, Any]] | None = None,
                     kms: bool = True) -> tuple[Any, Any, str, str, str]:
    east, west = server.client("s3", "us-east-1"), server.client("s3", "us-west-2")
    src, dst = uid("src"), uid("dst")
    east.create_bucket(Bucket=src)
    west.create_bucket(Bucket=dst, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    for client, bucket in ((east, src), (west, dst)):
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    src_key = server.client("kms", "us-east-1").create_key()["KeyMetadata"]["Arn"]
    dst_key = server.client("kms", "us-west-2").create_key()["KeyMetadata"]["Arn"]
    if kms:
        east.put_bucket_encryption(Bucket=src, ServerSideEncryptionConfiguration={"Rules": [{
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                   "KMSMasterKeyID": src_key}}]})
    rules = rules or [{
        "ID": "backups", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": "backups/"},
        "DeleteMarkerReplication": {"Status": "Disabled"},
        "SourceSelectionCriteria": {"SseKmsEncryptedObjects": {"Status": "Enabled"}},
        "Destination": {"Bucket": f"arn:aws:s3:::{dst}", "StorageClass": "STANDARD_IA",
                        "EncryptionConfiguration": {"ReplicaKmsKeyID": dst_key}},
    }]
    for r in rules:
        r.setdefault("Destination", {}).setdefault("Bucket", f"arn:aws:s3:::{dst}")
    east.put_bucket_replication(Bucket=src, ReplicationConfiguration={
        "Role": f"arn:aws:iam::{ACCOUNT}:role/s3-replication-role", "Rules": rules})
    return east, west, src, dst, dst_key


def test_s3_put_object_is_replicated_with_metadata_and_replica_kms_key(server: MotoServer) -> None:
    east, west, src, dst, dst_key = _replicated_pair(server)
    put = east.put_object(Bucket=src, Key="backups/db/1.dump.gz", Body=b"dump-1",
                          Metadata={"sha256": "abc", "kind": "database"},
                          ContentType="application/gzip", Tagging="kind=database")

    head = east.head_object(Bucket=src, Key="backups/db/1.dump.gz")
    assert head["ReplicationStatus"] == "COMPLETED"

    replica = west.get_object(Bucket=dst, Key="backups/db/1.dump.gz")
    assert replica["Body"].read() == b"dump-1"
    assert replica["ReplicationStatus"] == "REPLICA"
    assert replica["Metadata"] == {"sha256": "abc", "kind": "database"}
    assert replica["ContentType"] == "application/gzip"
    assert replica["ServerSideEncryption"] == "aws:kms"
    assert replica["SSEKMSKeyId"] == dst_key
    assert replica["StorageClass"] == "STANDARD_IA"
    assert replica["VersionId"] == put["VersionId"]
    assert replica["ETag"] == put["ETag"]
    assert replica["LastModified"] == head["LastModified"]
    tags = west.get_object_tagging(Bucket=dst, Key="backups/db/1.dump.gz")["TagSet"]
    assert tags == [{"Key": "kind", "Value": "database"}]


def test_s3_prefix_filter_and_no_delete_replication(server: MotoServer) -> None:
    east, west, src, dst, _ = _replicated_pair(server)
    east.put_object(Bucket=src, Key="drills/report.json", Body=b"{}")
    assert "ReplicationStatus" not in east.head_object(Bucket=src, Key="drills/report.json")
    assert west.list_objects_v2(Bucket=dst).get("KeyCount") == 0

    east.put_object(Bucket=src, Key="backups/a", Body=b"a1")
    east.put_object(Bucket=src, Key="backups/a", Body=b"a2")
    assert len(west.list_object_versions(Bucket=dst, Prefix="backups/a")["Versions"]) == 2
    east.delete_object(Bucket=src, Key="backups/a")  # DeleteMarkerReplication Disabled
    with pytest.raises(ClientError):
        east.head_object(Bucket=src, Key="backups/a")
    assert west.get_object(Bucket=dst, Key="backups/a")["Body"].read() == b"a2"


def test_s3_delete_marker_replicated_when_enabled(server: MotoServer) -> None:
    east, west, src, dst, _ = _replicated_pair(server, rules=[{
        "ID": "all", "Priority": 1, "Status": "Enabled", "Filter": {},
        "DeleteMarkerReplication": {"Status": "Enabled"}, "Destination": {}}], kms=False)
    east.put_object(Bucket=src, Key="x", Body=b"x")
    east.delete_object(Bucket=src, Key="x")
    with pytest.raises(ClientError):
        west.head_object(Bucket=dst, Key="x")
    markers = west.list_object_versions(Bucket=dst, Prefix="x").get("DeleteMarkers", [])
    assert len(markers) == 1


def test_s3_multipart_and_copy_are_replicated(server: MotoServer) -> None:
    east, west, src, dst, _ = _replicated_pair(server)
    part = b"p" * (5 * 1024 * 1024)
    up = east.create_multipart_upload(Bucket=src, Key="backups/chain.tar",
                                      Metadata={"parts": "2"})
    etags = [east.upload_part(Bucket=src, Key="backups/chain.tar", UploadId=up["UploadId"],
                              PartNumber=n, Body=part if n == 1 else b"tail")["ETag"]
             for n in (1, 2)]
    east.complete_multipart_upload(
        Bucket=src, Key="backups/chain.tar", UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), etags)]})
    assert east.head_object(Bucket=src, Key="backups/chain.tar")["ReplicationStatus"] == "COMPLETED"
    rep = west.head_object(Bucket=dst, Key="backups/chain.tar")
    assert rep["ReplicationStatus"] == "REPLICA"
    assert rep["ContentLength"] == len(part) + 4
    assert rep["Metadata"] == {"parts": "2"}

    east.put_object(Bucket=src, Key="staging/x", Body=b"copied")
    east.copy_object(Bucket=src, Key="backups/copied", CopySource={"Bucket": src, "Key": "staging/x"})
    assert west.get_object(Bucket=dst, Key="backups/copied")["Body"].read() == b"copied"


def test_s3_sse_kms_objects_need_source_selection_criteria(server: MotoServer) -> None:
    east, west, src, dst, _ = _replicated_pair(server, rules=[{
        "ID": "no-kms", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
        "DeleteMarkerReplication": {"Status": "Disabled"}, "Destination": {}}])
    east.put_object(Bucket=src, Key="k", Body=b"kms")
    assert "ReplicationStatus" not in east.head_object(Bucket=src, Key="k")
    assert west.list_objects_v2(Bucket=dst).get("KeyCount") == 0


def test_s3_asynchronous_replication_reports_pending_then_completed(server: MotoServer) -> None:
    east, west, src, dst, _ = _replicated_pair(server)
    ext.configure(s3_replication_delay=0.3)
    try:
        east.put_object(Bucket=src, Key="backups/slow", Body=b"slow")
        assert east.head_object(Bucket=src, Key="backups/slow")["ReplicationStatus"] == "PENDING"
        deadline = time.monotonic() + 5
        while east.head_object(Bucket=src, Key="backups/slow")["ReplicationStatus"] != "COMPLETED":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        ext.configure(s3_replication_delay=0)
    assert west.get_object(Bucket=dst, Key="backups/slow")["Body"].read() == b"slow"


def test_s3_missing_destination_reports_failed(server: MotoServer) -> None:
    east = server.client("s3")
    src = uid("src")
    east.create_bucket(Bucket=src)
    east.put_bucket_versioning(Bucket=src, VersioningConfiguration={"Status": "Enabled"})
    east.put_bucket_replication(Bucket=src, ReplicationConfiguration={
        "Role": f"arn:aws:iam::{ACCOUNT}:role/r", "Rules": [{
            "ID": "r", "Priority": 1, "Status": "Enabled", "Filter": {},
            "DeleteMarkerReplication": {"Status": "Disabled"},
            "Destination": {"Bucket": f"arn:aws:s3:::{uid('gone')}"}}]})
    east.put_object(Bucket=src, Key="k", Body=b"x")
    assert east.head_object(Bucket=src, Key="k")["ReplicationStatus"] == "FAILED"


# ------------------------------------------------------------------ RDS global cluster failover

def _global_cluster(server: MotoServer) -> tuple[Any, Any, str, str, str]:
    east, west = server.client("rds", "us-east-1"), server.client("rds", "us-west-2")
    gid, primary, secondary = uid("gc"), uid("primary"), uid("dr")
    east.create_global_cluster(GlobalClusterIdentifier=gid, Engine="aurora-postgresql")
    east.create_db_cluster(DBClusterIdentifier=primary, Engine="aurora-postgresql",
                           GlobalClusterIdentifier=gid, MasterUsername="xaiadmin",
                           MasterUserPassword="initial-password-1")
    west.create_db_cluster(DBClusterIdentifier=secondary, Engine="aurora-postgresql",
                           GlobalClusterIdentifier=gid)
    return east, west, gid, primary, secondary


def _writer(east: Any, gid: str) -> str:
    gc = east.describe_global_clusters(GlobalClusterIdentifier=gid)["GlobalClusters"][0]
    writers = [m["DBClusterArn"] for m in gc["GlobalClusterMembers"] if m["IsWriter"]]
    assert len(writers) == 1 and len(gc["GlobalClusterMembers"]) == 2
    assert gc["Status"] == "available"
    return writers[0].rsplit(":", 1)[-1]


@pytest.mark.parametrize("mode", ["failover", "switchover"])
def test_rds_global_failover_and_switchover(server: MotoServer, mode: str, tmp_path: Any) -> None:
    east, west, gid, primary, secondary = _global_cluster(server)
    record_file = tmp_path / "records.jsonl"
    ext.configure(record_file=str(record_file))
    secondary_arn = west.describe_db_clusters(DBClusterIdentifier=secondary)["DBClusters"][0]["DBClusterArn"]
    primary_arn = east.describe_db_clusters(DBClusterIdentifier=primary)["DBClusters"][0]["DBClusterArn"]
    assert _writer(east, gid) == primary
    assert west.describe_db_clusters(DBClusterIdentifier=secondary)["DBClusters"][0][
        "ReplicationSourceIdentifier"] == primary_arn

    promoted: list[tuple[str, str]] = []
    during: list[dict[str, Any]] = []

    def hook(cid: str) -> None:
        gc = east.describe_global_clusters(GlobalClusterIdentifier=gid)["GlobalClusters"][0]
        promoted.append((cid, gc["Status"]))
        during.append(gc.get("FailoverState", {}))

    ext.set_promotion_hook(hook)
    before = len(ext.promotion_calls())
    try:
        if mode == "failover":
            resp = west.failover_global_cluster(GlobalClusterIdentifier=gid,
                                                TargetDbClusterIdentifier=secondary_arn,
                                                AllowDataLoss=True)
            expected_status = "failing-over"
        else:
            resp = west.switchover_global_cluster(GlobalClusterIdentifier=gid,
                                                  TargetDbClusterIdentifier=secondary_arn)
            expected_status = "switching-over"
    finally:
        ext.set_promotion_hook(None)
        ext.configure(record_file=None)
    assert resp["GlobalCluster"]["Status"] == expected_status
    assert promoted == [(secondary, expected_status)]
    assert during[0]["FromDbClusterArn"] == primary_arn
    assert during[0]["ToDbClusterArn"] == secondary_arn
    assert during[0]["IsDataLossAllowed"] is (mode == "failover")
    gc_after = east.describe_global_clusters(GlobalClusterIdentifier=gid)["GlobalClusters"][0]
    assert "FailoverState" not in gc_after

    assert _writer(east, gid) == secondary
    new_writer = west.describe_db_clusters(DBClusterIdentifier=secondary)["DBClusters"][0]
    old_writer = east.describe_db_clusters(DBClusterIdentifier=primary)["DBClusters"][0]
    assert "ReplicationSourceIdentifier" not in new_writer
    assert old_writer["ReplicationSourceIdentifier"] == secondary_arn

    calls = [c for c in ext.promotion_calls()[before:] if c["global_cluster_id"] == gid]
    persisted = [r for r in ext.read_record_file(str(record_file), "promotion")
                 if r["global_cluster_id"] == gid]
    assert [(r["outcome"], r["target_cluster_id"]) for r in persisted] == [("ok", secondary)]
    assert len(calls) == 1
    assert calls[0]["mode"] == mode and calls[0]["outcome"] == "ok"
    assert calls[0]["target_cluster_id"] == secondary and calls[0]["from_cluster_id"] == primary
    assert isinstance(calls[0]["time"], dt.datetime)

    # failing back to the old primary works the same way
    east.switchover_global_cluster(GlobalClusterIdentifier=gid, TargetDbClusterIdentifier=primary_arn)
    assert _writer(east, gid) == primary


def test_a_retried_promotion_finds_its_own_in_flight_and_goes_on(server: MotoServer) -> None:
    """A lost reply: the first call started the switchover, botocore's retry is refused (the global
    cluster is switching over). start_promotion takes that for its own promotion; a promotion to
    the other cluster meanwhile is still refused."""
    east, west, gid, primary, secondary = _global_cluster(server)
    secondary_arn = west.describe_db_clusters(DBClusterIdentifier=secondary)["DBClusters"][0]["DBClusterArn"]
    primary_arn = east.describe_db_clusters(DBClusterIdentifier=primary)["DBClusters"][0]["DBClusterArn"]
    seen: list[str] = []

    def hook(cid: str) -> None:  # while RDS is switching over to `secondary`
        aurora.start_promotion(west, "switchover", gid, secondary_arn, secondary_arn)
        seen.append("retry accepted as ours")
        with pytest.raises(Exception) as other:
            aurora.start_promotion(east, "switchover", gid, primary_arn, primary_arn)
        seen.append(str(getattr(other.value, "response", {}).get("Error", {}).get("Code")))

    ext.set_promotion_hook(hook)
    try:
        west.switchover_global_cluster(GlobalClusterIdentifier=gid, TargetDbClusterIdentifier=secondary_arn)
    finally:
        ext.set_promotion_hook(None)
    assert seen == ["retry accepted as ours", "InvalidGlobalClusterStateFault"]
    assert _writer(east, gid) == secondary


def test_rds_failover_refusals_are_journaled_and_change_nothing(server: MotoServer) -> None:
    east, west, gid, primary, secondary = _global_cluster(server)
    before = len(ext.promotion_calls())
    with pytest.raises(ClientError) as err:
        west.failover_global_cluster(GlobalClusterIdentifier=gid, TargetDbClusterIdentifier=primary,
                                     AllowDataLoss=True)
    assert err.value.response["Error"]["Code"] == "InvalidDBClusterStateFault"
    with pytest.raises(ClientError) as err:
        west.failover_global_cluster(GlobalClusterIdentifier=uid("nope"),
                                     TargetDbClusterIdentifier=secondary, AllowDataLoss=True)
    assert err.value.response["Error"]["Code"] == "GlobalClusterNotFoundFault"

    def broken(cid: str) -> None:
        raise RuntimeError("pg_ctl promote failed")

    ext.set_promotion_hook(broken)
    try:
        with pytest.raises(ClientError) as err:
            west.failover_global_cluster(GlobalClusterIdentifier=gid,
                                         TargetDbClusterIdentifier=secondary, AllowDataLoss=True)
    finally:
        ext.set_promotion_hook(None)
    assert err.value.response["Error"]["Code"] == "InvalidGlobalClusterStateFault"
    assert _writer(east, gid) == primary
    outcomes = [c["outcome"] for c in ext.promotion_calls()[before:]]
    assert outcomes == ["error", "error", "error"]


def test_rds_describe_global_clusters_filter_and_cross_region_remove(server: MotoServer) -> None:
    east, west, gid, primary, secondary = _global_cluster(server)
    _global_cluster(server)  # another one, must not show up in the filtered call
    found = east.describe_global_clusters(GlobalClusterIdentifier=gid)["GlobalClusters"]
    assert [g["GlobalClusterIdentifier"] for g in found] == [gid]
    with pytest.raises(ClientError) as err:
        east.describe_global_clusters(GlobalClusterIdentifier=uid("missing"))
    assert err.value.response["Error"]["Code"] == "GlobalClusterNotFoundFault"

    secondary_arn = west.describe_db_clusters(DBClusterIdentifier=secondary)["DBClusters"][0]["DBClusterArn"]
    west.remove_from_global_cluster(GlobalClusterIdentifier=gid, DbClusterIdentifier=secondary_arn)
    members = east.describe_global_clusters(GlobalClusterIdentifier=gid)["GlobalClusters"][0][
        "GlobalClusterMembers"]
    assert [m["DBClusterArn"].rsplit(":", 1)[-1] for m in members] == [primary]
    detached = west.describe_db_clusters(DBClusterIdentifier=secondary)["DBClusters"][0]
    assert "GlobalClusterIdentifier" not in detached or not detached["GlobalClusterIdentifier"]
    assert "ReplicationSourceIdentifier" not in detached


def test_rds_point_in_time_restore_of_a_global_member_is_standalone(server: MotoServer) -> None:
    east, west, gid, primary, secondary = _global_cluster(server)
    restored = uid("pitr")
    east.restore_db_cluster_to_point_in_time(DBClusterIdentifier=restored,
                                             SourceDBClusterIdentifier=primary,
                                             UseLatestRestorableTime=True)
    copy_ = east.describe_db_clusters(DBClusterIdentifier=restored)["DBClusters"][0]
    assert not copy_.get("GlobalClusterIdentifier") and "ReplicationSourceIdentifier" not in copy_
    source = east.describe_db_clusters(DBClusterIdentifier=primary)["DBClusters"][0]
    assert copy_["DBClusterArn"] not in source["ReadReplicaIdentifiers"]
    members = east.describe_global_clusters(GlobalClusterIdentifier=gid)["GlobalClusters"][0][
        "GlobalClusterMembers"]
    assert sorted(m["DBClusterArn"].rsplit(":", 1)[-1] for m in members) == sorted([primary, secondary])
    # a secondary restores too, with the primary's master user (moto keeps none for it)
    dr_copy = uid("pitr-dr")
    west.restore_db_cluster_to_point_in_time(DBClusterIdentifier=dr_copy,
                                             SourceDBClusterIdentifier=secondary,
                                             UseLatestRestorableTime=True)
    restored_dr = west.describe_db_clusters(DBClusterIdentifier=dr_copy)["DBClusters"][0]
    assert restored_dr["MasterUsername"] == "xaiadmin" and not restored_dr.get("GlobalClusterIdentifier")


def test_rds_restore_from_a_snapshot_arn_of_a_global_member_is_standalone(server: MotoServer) -> None:
    east, west, gid, primary, secondary = _global_cluster(server)
    snap = east.create_db_cluster_snapshot(DBClusterIdentifier=primary,
                                           DBClusterSnapshotIdentifier=uid("snap"))["DBClusterSnapshot"]
    restored = uid("from-snap")
    # by ARN, as a snapshot shared from another account can only be named (moto finds only identifiers)
    east.restore_db_cluster_from_snapshot(DBClusterIdentifier=restored, SnapshotIdentifier=snap["DBClusterSnapshotArn"],
                                          Engine="aurora-postgresql")
    copy_ = east.describe_db_clusters(DBClusterIdentifier=restored)["DBClusters"][0]
    assert not copy_.get("GlobalClusterIdentifier") and "ReplicationSourceIdentifier" not in copy_
    assert copy_["MasterUsername"] == "xaiadmin" and not copy_["DBClusterMembers"]
    members = east.describe_global_clusters(GlobalClusterIdentifier=gid)["GlobalClusters"][0][
        "GlobalClusterMembers"]
    assert sorted(m["DBClusterArn"].rsplit(":", 1)[-1] for m in members) == sorted([primary, secondary])
    # a secondary's snapshot restores too, with the primary's master user (moto keeps none for it)
    dr_snap = west.create_db_cluster_snapshot(DBClusterIdentifier=secondary,
                                              DBClusterSnapshotIdentifier=uid("snap-dr"))["DBClusterSnapshot"]
    dr_copy = uid("from-snap-dr")
    west.restore_db_cluster_from_snapshot(DBClusterIdentifier=dr_copy,
                                          SnapshotIdentifier=dr_snap["DBClusterSnapshotIdentifier"],
                                          Engine="aurora-postgresql")
    restored_dr = west.describe_db_clusters(DBClusterIdentifier=dr_copy)["DBClusters"][0]
    assert restored_dr["MasterUsername"] == "xaiadmin" and not restored_dr.get("GlobalClusterIdentifier")
    with pytest.raises(ClientError) as err:
        east.restore_db_cluster_from_snapshot(DBClusterIdentifier=uid("none"), Engine="aurora-postgresql",
                                              SnapshotIdentifier=snap["DBClusterSnapshotArn"] + "-gone")
    assert err.value.response["Error"]["Code"] == "DBClusterSnapshotNotFoundFault"


# ------------------------------------------------------------------- Route 53 health checks

class _Health(http.server.BaseHTTPRequestHandler):
    code = 200

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(type(self).code)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_route53_health_status_reflects_inversion_and_probe(server: MotoServer) -> None:
    r53 = server.client("route53")
    hc_id = r53.create_health_check(CallerReference=uid("hc"), HealthCheckConfig={
        "Type": "HTTPS", "FullyQualifiedDomainName": "node.xai.example.com",
        "ResourcePath": "/health", "Port": 443})["HealthCheck"]["Id"]

    def statuses() -> set[str]:
        obs = r53.get_health_check_status(HealthCheckId=hc_id)["HealthCheckObservations"]
        return {o["StatusReport"]["Status"].split(":")[0] for o in obs}

    assert statuses() == {"Success"}
    r53.update_health_check(HealthCheckId=hc_id, Inverted=True)
    assert statuses() == {"Failure"}
    r53.update_health_check(HealthCheckId=hc_id, Inverted=False)
    assert statuses() == {"Success"}

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        ext.set_health_probe(hc_id, f"http://127.0.0.1:{httpd.server_address[1]}/health")
        assert statuses() == {"Success"}
        _Health.code = 503
        assert statuses() == {"Failure"}
        r53.update_health_check(HealthCheckId=hc_id, Inverted=True)
        assert statuses() == {"Success"}  # inverted unhealthy endpoint is healthy
        r53.update_health_check(HealthCheckId=hc_id, Inverted=False, Disabled=True)
        assert statuses() == {"Success"}  # disabled checks count as healthy
        r53.update_health_check(HealthCheckId=hc_id, Disabled=False)
        ext.set_health_probe(hc_id, lambda: False)
        assert statuses() == {"Failure"}
    finally:
        ext.set_health_probe(hc_id, None)
        _Health.code = 200
        httpd.shutdown()
    assert statuses() == {"Success"}


# --------------------------------------------------------------------------- credential hooks

def test_rds_master_password_hook(server: MotoServer) -> None:
    east, _, _, primary, _ = _global_cluster(server)
    seen: list[tuple[str, str]] = []
    ext.set_master_password_hook(lambda cid, pw: seen.append((cid, pw)))
    try:
        east.modify_db_cluster(DBClusterIdentifier=primary, MasterUserPassword="n3w-Passw0rd-xyz",
                               ApplyImmediately=True)
        east.modify_db_cluster(DBClusterIdentifier=primary, DeletionProtection=False)
    finally:
        ext.set_master_password_hook(None)
    assert seen == [(primary, "n3w-Passw0rd-xyz")]
    rec = [c for c in ext.master_password_calls() if c["cluster_id"] == primary]
    assert len(rec) == 1 and rec[0]["password_fingerprint"] == ext.fingerprint("n3w-Passw0rd-xyz")
    assert "n3w-Passw0rd-xyz" not in repr(ext.master_password_calls())

    def broken(cid: str, pw: str) -> None:
        raise ConnectionError("postgres down")

    ext.set_master_password_hook(broken)
    try:
        with pytest.raises(ClientError) as err:
            east.modify_db_cluster(DBClusterIdentifier=primary, MasterUserPassword="another-Passw0rd",
                                   ApplyImmediately=True)
    finally:
        ext.set_master_password_hook(None)
    assert err.value.response["Error"]["Code"] == "InvalidDBClusterStateFault"


def test_elasticache_auth_token_rotate_set_delete(server: MotoServer) -> None:
    ec = server.client("elasticache")
    gid = uid("redis")
    old, new = "old-token-0123456789", "new-token-0123456789"
    ec.create_replication_group(ReplicationGroupId=gid, ReplicationGroupDescription="cache",
                                Engine="redis", CacheNodeType="cache.t4g.micro",
                                NumCacheClusters=1, TransitEncryptionEnabled=True, AuthToken=old)
    assert ext.cache_auth_tokens(gid) == [old]
    seen: list[tuple[str, Any, str]] = []
    ext.set_auth_token_hook(lambda g, t, s: seen.append((g, t, s)))
    try:
        ec.modify_replication_group(ReplicationGroupId=gid, AuthToken=new,
                                    AuthTokenUpdateStrategy="ROTATE", ApplyImmediately=True)
        assert ext.cache_auth_tokens(gid) == [old, new]
        ec.modify_replication_group(ReplicationGroupId=gid, AuthToken=new,
                                    AuthTokenUpdateStrategy="SET", ApplyImmediately=True)
        assert ext.cache_auth_tokens(gid) == [new]
        group = ec.describe_replication_groups(ReplicationGroupId=gid)["ReplicationGroups"][0]
        assert group["AuthTokenEnabled"] is True
        with pytest.raises(ClientError) as err:
            ec.modify_replication_group(ReplicationGroupId=gid, AuthTokenUpdateStrategy="SET",
                                        ApplyImmediately=True)
        assert err.value.response["Error"]["Code"] == "InvalidParameterValue"
        ec.modify_replication_group(ReplicationGroupId=gid, AuthTokenUpdateStrategy="DELETE",
                                    ApplyImmediately=True)
    finally:
        ext.set_auth_token_hook(None)
    assert seen == [(gid, new, "ROTATE"), (gid, new, "SET"), (gid, None, "DELETE")]
    assert ext.cache_auth_tokens(gid) == []
    group = ec.describe_replication_groups(ReplicationGroupId=gid)["ReplicationGroups"][0]
    assert group["AuthTokenEnabled"] is False
    recs = [c for c in ext.auth_token_calls() if c["replication_group_id"] == gid]
    assert [c["strategy"] for c in recs] == ["ROTATE", "SET", "DELETE"]
    assert new not in repr(recs)

    def broken(g: str, t: Any, s: str) -> None:
        raise ConnectionError("redis down")

    ext.set_auth_token_hook(broken)
    try:
        with pytest.raises(ClientError) as err:
            ec.modify_replication_group(ReplicationGroupId=gid, AuthToken=old,
                                        AuthTokenUpdateStrategy="ROTATE", ApplyImmediately=True)
    finally:
        ext.set_auth_token_hook(None)
    assert err.value.response["Error"]["Code"] == "InvalidReplicationGroupState"
    assert ext.cache_auth_tokens(gid) == []


# ------------------------------------------------------------------------ CloudTrail lookup

def test_cloudtrail_lookup_events_from_recorded_calls(server: MotoServer) -> None:
    iam = server.client("iam")
    user = uid("mallory")
    iam.create_user(UserName=user)
    # what the (compromised) user may do: where the IAM authorizer is installed, it is enforced
    iam.put_user_policy(UserName=user, PolicyName="ec2", PolicyDocument=json.dumps({"Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["ec2:RunInstances", "ec2:DescribeInstances"], "Resource": "*"}]}))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    as_user = boto3.client("ec2", region_name="us-east-1", endpoint_url=server.endpoint, verify=server.ca_bundle,
                           aws_access_key_id=key["AccessKeyId"],
                           aws_secret_access_key=key["SecretAccessKey"])
    instance = as_user.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)[
        "Instances"][0]["InstanceId"]
    as_user.describe_instances(InstanceIds=[instance])
    iam.update_access_key(UserName=user, AccessKeyId=key["AccessKeyId"], Status="Inactive")

    ct = server.client("cloudtrail")
    by_user = ct.lookup_events(LookupAttributes=[{"AttributeKey": "Username",
                                                  "AttributeValue": user}])["Events"]
    assert [e["EventName"] for e in by_user] == ["DescribeInstances", "RunInstances"]  # newest first
    assert all(e["AccessKeyId"] == key["AccessKeyId"] for e in by_user)

    by_resource = ct.lookup_events(LookupAttributes=[{"AttributeKey": "ResourceName",
                                                      "AttributeValue": instance}])["Events"]
    assert [e["EventName"] for e in by_resource] == ["DescribeInstances"]
    assert {"ResourceType": "AWS::EC2::Instance", "ResourceName": instance} in by_resource[0]["Resources"]

    # IAM is a global service: its events are in us-east-1
    upd = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName",
                                              "AttributeValue": "UpdateAccessKey"}],
                           StartTime=start)["Events"]
    assert any(r["ResourceName"] == user for e in upd for r in e.get("Resources", []))
    assert key["SecretAccessKey"] not in repr(ext.cloudtrail_events())

    later = ct.lookup_events(LookupAttributes=[{"AttributeKey": "Username", "AttributeValue": user}],
                             StartTime=dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1))
    assert later["Events"] == []
    page = ct.lookup_events(LookupAttributes=[{"AttributeKey": "Username", "AttributeValue": user}],
                            MaxResults=1)
    assert len(page["Events"]) == 1 and page["NextToken"]
    with pytest.raises(ClientError) as err:
        ct.lookup_events(LookupAttributes=[{"AttributeKey": "Username", "AttributeValue": user},
                                           {"AttributeKey": "EventName", "AttributeValue": "X"}])
    assert err.value.response["Error"]["Code"] == "InvalidLookupAttributesException"
    west = server.client("cloudtrail", "us-west-2")
    assert west.lookup_events(LookupAttributes=[{"AttributeKey": "Username",
                                                 "AttributeValue": user}])["Events"] == []
