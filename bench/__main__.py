"""`python -m bench`: run every competitor of issue 8 side by side and write the report.

For each data size: `recovery` vs the DR plan's own pipeline (pg_dump | gzip, tar -czf, awscli)
vs the limit (what PostgreSQL or tar alone needs), on the same data, the same PostgreSQL and the
same out-of-process moto server (recovery.local.aws_daemon, as `recovery local up` runs it), in
alternating order (round 1 forwards, round 2 backwards, ...), N runs each. Figures per run:
wall, CPU of the process tree, peak RSS (tree sum and largest process), CPU caused in the
PostgreSQL and moto servers, bytes stored in S3. Raw runs -> JSON; medians -> Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench import report
from bench.data import PG_PASSWORD, SIZES, CachedCluster, Dataset, ensure_dataset
from bench.measure import CommandFailed, Watch, add, load_average, machine, run_measured

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STACK = "production"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------- the emulator

class DaemonMoto:
    """moto as a separate process (recovery.local.aws_daemon): awscli and `recovery` share it fairly."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-m", "recovery.local.aws_daemon", "--state-dir", str(state_dir)],
                                     stdout=subprocess.DEVNULL, stderr=open(state_dir / "moto.log", "w"), cwd=ROOT)
        deadline = time.monotonic() + 60
        while not (state_dir / "aws.json").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto daemon did not start; see {state_dir / 'moto.log'}")
            time.sleep(0.1)
        aws = json.loads((state_dir / "aws.json").read_text())
        self.endpoint, self.ca_bundle = aws["endpoint"], aws["ca_bundle"]
        self.pid = self.proc.pid

    def env(self) -> dict[str, str]:
        from recovery.local.moto_server import DUMMY_ENV

        return {**DUMMY_ENV, "AWS_ENDPOINT_URL": self.endpoint, "AWS_CA_BUNDLE": self.ca_bundle}

    def client(self, service: str) -> Any:
        from recovery.local.deploy import admin_client

        return admin_client(service, "us-east-1", self.endpoint, self.ca_bundle)

    def reset(self) -> None:
        import ssl

        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"), timeout=30,
                               context=ssl.create_default_context(cafile=self.ca_bundle)).read()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ------------------------------------------------------------------------------- competitors

@dataclass
class Competitor:
    group: str  # backup-db | restore-db | verify | backup-chain | restore-chain
    id: str  # plan | gzip | zstd | recovery | limit | limit-plain | limit-gz | limit-zst (unique in the group)
    name: str
    role: str  # plan | recovery | limit
    run: Callable[[int], dict[str, Any]]  # run index -> figures (+ details)
    needs_aws_cli: bool = False
    limit_ref: str | None = None  # id of the limit this one is compared with (default: the group's "limit")
    needs: str | None = None  # a feature of this `recovery` (FEATURES) without which it is skipped


@dataclass
class SizeBench:
    ds: Dataset
    pg: CachedCluster
    moto: DaemonMoto
    work: Path
    outputs_file: Path
    bucket: str
    env: dict[str, str]
    watch: Watch
    logfile: Path
    node_url: str
    aws_env: dict[str, str] = field(default_factory=dict)  # the plan's awscli, as the backup role
    kms_key: str = ""  # the vault's key, which its bucket policy demands on every upload
    keep: dict[str, str] = field(default_factory=dict)  # role -> S3 key kept for the later groups

    # -- helpers
    def pgenv(self, db: str | None = None) -> dict[str, str]:
        return {**self.env, **self.pg.env(), "PGDATABASE": db or self.ds.db}

    def measure(self, cmd: str | list[str], env: dict[str, str] | None = None) -> tuple[dict[str, float], str]:
        return run_measured(cmd, env or self.env, cwd=ROOT, watch=self.watch, log=self.logfile)

    def aws_cp(self, src: str, dest: str) -> dict[str, float]:
        """The plan's `aws s3 cp`, as the backup role; an upload names the vault's key (the vault refuses others)."""
        sse = ["--sse", "aws:kms", "--sse-kms-key-id", self.kms_key] if dest.startswith("s3://") else []
        return self.measure(["aws", "s3", "cp", "--quiet", src, dest, *sse], self.aws_env)[0]

    def recovery(self, words: str, *opts: str) -> tuple[dict[str, float], Any]:
        """`recovery WORDS --stack S --outputs F --json OPTS`, as an operator runs it (the console script)."""
        argv = [str(BIN / "recovery"), *words.split(), "--stack", STACK, "--outputs", str(self.outputs_file), "--json", *opts]
        prof = os.environ.get("BENCH_PROFILE")  # e.g. "restore chain": sample that command with py-spy
        if prof and prof == words:
            out_file = self.work.parent.parent / f"profile-{words.replace(' ', '-')}-{self.ds.size.name}-{time.time():.0f}.txt"
            argv = [str(BIN / "py-spy"), "record", "-r", "250", "-f", "raw", "-o", str(out_file),
                    *os.environ.get("BENCH_PROFILE_ARGS", "").split(), "--", *argv]
        fig, out = self.measure(argv)
        return fig, json.loads("\n".join(line for line in out.splitlines() if not line.startswith("py-spy>")))

    def s3_size(self, key: str) -> int:
        return int(self.moto.client("s3").head_object(Bucket=self.bucket, Key=key)["ContentLength"])

    def purge(self, prefix: str) -> None:
        """Delete every version of every key under prefix (moto keeps all objects in memory).

        The vault has Object Lock in GOVERNANCE mode (as the stacks declare it): the account's root
        bypasses it, as an administrator may; the tool itself never deletes a backup."""
        s3 = self.moto.client("s3")
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix):
            objs = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            if objs:
                r = s3.delete_objects(Bucket=self.bucket, Delete={"Objects": objs, "Quiet": True},
                                      BypassGovernanceRetention=True)
                if r.get("Errors"):
                    raise RuntimeError(f"could not purge {prefix}: {r['Errors'][0]}")

    def replace_kept(self, role: str, key: str) -> None:
        old = self.keep.get(role)
        if old and old != key:
            self.purge(old)
        self.keep[role] = key

    def local(self, name: str) -> Path:
        return self.work / name

    def complete_probe(self, total_bytes: int) -> dict[str, Any]:
        """What moto's CompleteMultipartUpload costs for an object of `total_bytes` in the tool's part
        size: moto joins the parts in Python, real S3 does not copy them. A bucket of its own, as root."""
        part_size = 8 * 1024 * 1024  # RECOVERY_PART_SIZE_MB's default (recovery/knobs.py)
        n = max(1, -(-total_bytes // part_size))
        s3, bucket, key = self.moto.client("s3"), "bench-complete-probe", "probe"
        s3.create_bucket(Bucket=bucket)
        body = os.urandom(part_size)
        up = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        parts = [{"PartNumber": i + 1, "ETag": s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=i + 1,
                                                              Body=body)["ETag"]} for i in range(n)]
        t = time.perf_counter()
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up, MultipartUpload={"Parts": parts})
        took = time.perf_counter() - t
        s3.delete_object(Bucket=bucket, Key=key)
        s3.delete_bucket(Bucket=bucket)
        return {"object_bytes": n * part_size, "parts": n, "complete_s": round(took, 3)}

    # -- competitors
    def competitors(self) -> list[Competitor]:
        ds, b = self.ds, self.bucket
        C: list[Competitor] = []

        # backup, database
        def plan_backup_db(i: int) -> dict[str, Any]:
            f = self.local("plan-database.sql.gz")
            key = f"backups/plan/database-{i}.sql.gz"
            dump, _ = self.measure(f"pg_dump | gzip > {f}", self.pgenv())
            up = self.aws_cp(str(f), f"s3://{b}/{key}")
            self.replace_kept("plan-db", key)
            return {**add(dump, up), "s3_bytes": self.s3_size(key), "stages": {"pg_dump|gzip": dump["wall_s"], "aws s3 cp": up["wall_s"]}}

        def recovery_backup_db(fmt: str) -> Callable[[int], dict[str, Any]]:
            def run(i: int) -> dict[str, Any]:
                fig, m = self.recovery("backup db", "--format", fmt)
                self.replace_kept(f"recovery-db-{fmt}", m["key"])
                return {**fig, "s3_bytes": m["stored_bytes"], "key": m["key"], "compressor": m.get("compressor")}
            return run

        C += [
            Competitor("backup-db", "plan", "plan: pg_dump | gzip > f; aws s3 cp f --sse aws:kms --sse-kms-key-id K", "plan", plan_backup_db, True),
            Competitor("backup-db", "gzip", "recovery backup db (gzip, default)", "recovery", recovery_backup_db("gzip")),
            Competitor("backup-db", "zstd", "recovery backup db --format zstd (fastest)", "recovery",
                       recovery_backup_db("zstd")),
            Competitor("backup-db", "parallel", "recovery backup db --format parallel", "recovery",
                       recovery_backup_db("parallel"), needs="parallel"),
            Competitor("backup-db", "limit", "limit: pg_dump > /dev/null", "limit",
                       lambda i: self.measure("pg_dump > /dev/null", self.pgenv())[0]),
        ]

        # restore, database (each run into a new database, dropped afterwards, unmeasured)
        def fresh(tag: str) -> str:
            name = f"bench_r_{tag}"
            self.pg.drop(name)
            return name

        def plan_restore_db(i: int) -> dict[str, Any]:
            f = self.local("plan-restore.sql.gz")
            db = fresh("plan")
            down = self.aws_cp(f"s3://{b}/{self.keep['plan-db']}", str(f))
            load, _ = self.measure(f"createdb {db} && gunzip -c {f} | psql -q -v ON_ERROR_STOP=1 -d {db} > /dev/null", self.pgenv(db))
            self.pg.drop(db)
            f.unlink()
            return {**add(down, load), "stages": {"aws s3 cp": down["wall_s"], "gunzip -c | psql": load["wall_s"]}}

        def recovery_restore_db(fmt: str, *opts: str) -> Callable[[int], dict[str, Any]]:
            def run(i: int) -> dict[str, Any]:
                db = fresh(fmt)
                fig, j = self.recovery("restore db", "--backup", self.keep[f"recovery-db-{fmt}"], "--target-db", db,
                                       "--yes", *opts)
                self.pg.drop(db)
                steps = {s["name"]: round(s.get("duration_s") or 0, 2) for s in j.get("steps", [])}
                detail = next((s.get("detail") or {} for s in j.get("steps", []) if s["name"] == "restore-scratch"), {})
                phases = {k: detail[k] for k in ("download_s", "decompress_s", "sql_s") if k in detail}
                return {**fig, "stages": steps, "restore_scratch": phases}
            return run

        def local_file(fmt: str) -> Path:
            """The recovery backup of this format as a local file (downloaded once, unmeasured)."""
            f = self.local(f"local.sql.{'gz' if fmt == 'gzip' else 'zst'}")
            if not f.exists():
                with open(f, "wb") as fh:
                    body = self.moto.client("s3").get_object(Bucket=b, Key=self.keep[f"recovery-db-{fmt}"])["Body"]
                    for chunk in body.iter_chunks(1 << 20):
                        fh.write(chunk)
            return f

        def limit_ingest(cmd: Callable[[str, str], str], tag: str) -> Callable[[int], dict[str, Any]]:
            def run(i: int) -> dict[str, Any]:
                db = fresh(tag)
                psql = f"psql -q -v ON_ERROR_STOP=1 -d {db} > /dev/null"
                fig, _ = self.measure(f"createdb {db} && {cmd(psql, db)}", self.pgenv(db))
                self.pg.drop(db)
                return fig
            return run

        C += [
            Competitor("restore-db", "plan", "plan: aws s3 cp; createdb; gunzip -c f | psql", "plan", plan_restore_db, True),
            Competitor("restore-db", "gzip", "recovery restore db (gzip, default; one pass: scratch + checks + swap)", "recovery",
                       recovery_restore_db("gzip"), limit_ref="limit-gz"),
            Competitor("restore-db", "zstd", "recovery restore db (zstd, fastest; one pass: scratch + checks + swap)", "recovery",
                       recovery_restore_db("zstd"), limit_ref="limit-zst"),
            Competitor("restore-db", "parallel", "recovery restore db --jobs 2 (parallel format)", "recovery",
                       recovery_restore_db("parallel", "--jobs", "2"), limit_ref="limit-pgr", needs="parallel"),
            # the single-stream ingest: psql reads the plain SQL itself, nothing to decompress
            Competitor("restore-db", "limit-plain", "limit: psql < plain.sql (local, single stream)", "limit",
                       limit_ingest(lambda psql, db: f"{psql} < {ds.plain_sql}", "plain")),
            Competitor("restore-db", "limit-gz", "limit: gunzip -c f.sql.gz | psql (local)", "limit",
                       limit_ingest(lambda psql, db: f"gunzip -c {local_file('gzip')} | {psql}", "lgz")),
            Competitor("restore-db", "limit-zst", "limit: zstd -dc f.sql.zst | psql (local)", "limit",
                       limit_ingest(lambda psql, db: f"zstd -dcq {local_file('zstd')} | {psql}", "lzst")),
            # the parallel format's limit: PostgreSQL's own parallel restore of a local custom-format dump
            Competitor("restore-db", "limit-pgr", "limit: pg_restore -j2 -d db f.dump (local, pg_dump -Fc)", "limit",
                       limit_ingest(lambda psql, db: f"pg_restore -j2 --exit-on-error -d {db} {ds.custom_dump}", "pgr")),
        ]

        # verify: the same gzip object (the latest db backup once the zstd one is purged)
        def plan_verify(i: int) -> dict[str, Any]:
            return self.measure(f"aws s3 cp --quiet s3://{b}/{self.keep['recovery-db-gzip']} - | gunzip -t", self.aws_env)[0]

        def recovery_verify(i: int) -> dict[str, Any]:
            fig, rep = self.recovery("verify", "--kind", "db", "--no-record")
            verified = rep.get("backups", {}).get("db")
            if verified != self.keep["recovery-db-gzip"]:
                raise CommandFailed(f"recovery verify checked {verified}, not {self.keep['recovery-db-gzip']}")
            return fig

        C += [
            Competitor("verify", "plan", "plan: aws s3 cp - | gunzip -t", "plan", plan_verify, True),
            Competitor("verify", "recovery", "recovery verify --kind db", "recovery", recovery_verify),
        ]

        # chain data
        parent, name = ds.chain_dir.parent, ds.chain_dir.name

        def plan_backup_chain(i: int) -> dict[str, Any]:
            f = self.local("plan-blockchain.tar.gz")
            key = f"backups/plan/blockchain-{i}.tar.gz"
            tar, _ = self.measure(["tar", "-czf", str(f), "-C", str(parent), name])
            up = self.aws_cp(str(f), f"s3://{b}/{key}")
            self.replace_kept("plan-chain", key)
            return {**add(tar, up), "s3_bytes": self.s3_size(key), "stages": {"tar -czf": tar["wall_s"], "aws s3 cp": up["wall_s"]}}

        def recovery_backup_chain(i: int) -> dict[str, Any]:
            fig, m = self.recovery("backup chain", "--data-dir", str(ds.chain_dir))
            self.replace_kept("recovery-chain", m["key"])
            return {**fig, "s3_bytes": m["stored_bytes"], "key": m["key"]}

        C += [
            Competitor("backup-chain", "plan", "plan: tar -czf f dir; aws s3 cp f --sse aws:kms --sse-kms-key-id K", "plan", plan_backup_chain, True),
            Competitor("backup-chain", "recovery", "recovery backup chain", "recovery", recovery_backup_chain),
            # `| cat`: GNU tar skips reading file contents when it sees its output is /dev/null
            Competitor("backup-chain", "limit", "limit: tar -cf - dir | cat > /dev/null", "limit",
                       lambda i: self.measure(f"tar -cf - -C {parent} {name} | cat > /dev/null")[0]),
        ]

        def target(tag: str) -> Path:
            t = self.local(f"restore-{tag}")
            shutil.rmtree(t, ignore_errors=True)
            t.mkdir()
            return t

        def plan_restore_chain(i: int) -> dict[str, Any]:
            f = self.local("plan-restore.tar.gz")
            t = target("plan")
            down = self.aws_cp(f"s3://{b}/{self.keep['plan-chain']}", str(f))
            ext, _ = self.measure(["tar", "-xzf", str(f), "-C", str(t)])
            shutil.rmtree(t)
            f.unlink()
            return {**add(down, ext), "stages": {"aws s3 cp": down["wall_s"], "tar -xzf": ext["wall_s"]}}

        def recovery_restore_chain(i: int) -> dict[str, Any]:
            t = target("recovery")
            fig, j = self.recovery("restore chain", "--data-dir", str(t / name), "--backup", self.keep["recovery-chain"],
                                   "--owner", "", "--node-url", self.node_url, "--sync-timeout", "120s", "--yes")
            shutil.rmtree(t)
            return {**fig, "stages": {s["name"]: round(s.get("duration_s") or 0, 2) for s in j.get("steps", [])}}

        def limit_restore_chain(i: int) -> dict[str, Any]:
            t = target("limit")
            fig, _ = self.measure(["tar", "-xf", str(ds.chain_tar), "-C", str(t)])
            shutil.rmtree(t)
            return fig

        C += [
            Competitor("restore-chain", "plan", "plan: aws s3 cp; tar -xzf f", "plan", plan_restore_chain, True),
            Competitor("restore-chain", "recovery", "recovery restore chain (one pass: staging + checks + swap)", "recovery",
                       recovery_restore_chain),
            Competitor("restore-chain", "limit", "limit: tar -xf f.tar (local, uncompressed)", "limit", limit_restore_chain),
        ]
        return C


# Features of `recovery` some competitors need: name -> (how to tell it is there, why it is skipped if not).
FEATURES: dict[str, tuple[Callable[[], bool], str]] = {
    "parallel": (lambda: "parallel" in _choices(_help("backup", "db"), "--format"),
                 "this `recovery` has no parallel format: `recovery backup db --help` does not list it"),
}


def _help(*words: str) -> str:
    p = subprocess.run([str(BIN / "recovery"), *words, "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    return p.stdout


def _choices(help_text: str, option: str) -> list[str]:
    """The choices click lists for `option` (`--format [gzip|zstd]`)."""
    m = re.search(re.escape(option) + r"\s+\[([^\]]*)\]", help_text)
    return m.group(1).split("|") if m else []


def available_features() -> set[str]:
    return {name for name, (present, _) in FEATURES.items() if present()}


GROUP_ORDER = ["backup-db", "restore-db", "verify", "backup-chain", "restore-chain"]


NEEDS = {"restore-db": "backup-db", "verify": "backup-db", "restore-chain": "backup-chain"}


def _role_profile_env(env: dict[str, str], work: Path, oncall: Any, role_arn: str) -> dict[str, str]:
    """The plan's awscli as an operator runs it under least privilege: a profile that assumes the backup
    role from the on-call identity (README "Jobs and roles")."""
    config = work / "aws-config"
    config.write_text(f"[profile oncall]\naws_access_key_id = {oncall.access_key_id}\n"
                      f"aws_secret_access_key = {oncall.secret_access_key}\n\n"
                      f"[profile xai-backup]\nrole_arn = {role_arn}\nsource_profile = oncall\nregion = us-east-1\n")
    config.chmod(0o600)
    keep = {k: v for k, v in env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
    # HOME too: awscli caches assumed-role sessions under ~/.aws/cli/cache, and a session of an earlier
    # emulator's role would be refused by this one.
    return {**keep, "AWS_CONFIG_FILE": str(config), "AWS_PROFILE": "xai-backup", "HOME": str(work)}


def run_size(ds: Dataset, pg: CachedCluster, moto: DaemonMoto, runs: int, work: Path, have_aws: bool,
             node_url: str, groups: set[str] | None = None, features: set[str] | None = None,
             emulator: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    from recovery.local.deploy import PRIMARY
    from recovery.local.deploy_bound import deploy_with_database

    features = features or set()
    moto.reset()  # the bench's emulator runs in a daemon of its own, so this deploys afresh each time
    deployed = deploy_with_database(moto.endpoint, moto.ca_bundle, stacks=(PRIMARY,), db_port=pg.port,
                                    db_name=ds.db, db_user=pg.user, db_password=PG_PASSWORD)
    outputs, oncall = deployed.outputs[PRIMARY], deployed.oncall
    outputs_file = work / "outputs.json"
    outputs_file.write_text(json.dumps(outputs))
    services = work / "services.json"
    services.write_text(json.dumps({"services": [{"name": "xai-node", "stop": "true", "start": "true"}]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "AWS_", "RECOVERY_"))}
    env.update(moto.env())
    env.update(oncall.env())  # `recovery` assumes its job roles from the on-call identity, as in AWS
    env.update({"PATH": f"{BIN}:{env.get('PATH', '')}", "RECOVERY_SERVICES_CONFIG": str(services),
                "RECOVERY_JOURNAL_DIR": str(work / "journal"),
                "RECOVERY_SYNC_POLL_SECONDS": "0.2"})
    sb = SizeBench(ds, pg, moto, work, outputs_file, outputs["backup_bucket_name"], env,
                   Watch(pg.postmaster_pid(), moto.pid), work / "commands.log", node_url,
                   aws_env=_role_profile_env(env, work, oncall, outputs["recovery_role_arns"]["backup"]),
                   kms_key=outputs["backup_kms_key_arn"])
    records: list[dict[str, Any]] = []
    comps = sb.competitors()
    for group in GROUP_ORDER:
        if groups and group not in groups:
            continue
        members = [c for c in comps if c.group == group]
        if group == "verify":  # make the gzip backup the latest db backup: drop the other kept db objects
            for role in ("recovery-db-zstd", "recovery-db-parallel", "plan-db"):
                if role in sb.keep:
                    sb.purge(sb.keep.pop(role))
        for r in range(runs):
            order = members if r % 2 == 0 else list(reversed(members))
            for c in order:
                rec: dict[str, Any] = {"size": ds.size.name, "group": group, "id": c.id, "competitor": c.name,
                                       "role": c.role, "limit_ref": c.limit_ref, "run": r,
                                       "load_1m_before": round(load_average()[0], 2)}
                if c.needs_aws_cli and not have_aws:
                    rec["skipped"] = "aws (awscli) not on PATH"
                    records.append(rec)
                    continue
                if c.needs and c.needs not in features:
                    rec["skipped"] = FEATURES[c.needs][1]
                    records.append(rec)
                    continue
                log(f"{ds.size.name} {group} run {r + 1}/{runs}: {c.name}")
                rec.update(c.run(r))
                rec = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in rec.items()}
                records.append(rec)
                log(f"    wall {rec['wall_s']:.2f}s cpu {rec['cpu_s']:.2f}s rss {rec['rss_tree_mb']:.0f}MB")
        if group == "restore-db":
            for f in work.glob("local.sql.*"):
                f.unlink()
        if group == "backup-db" and emulator is not None:
            sizes = [r["s3_bytes"] for r in records if r["group"] == "backup-db" and r["id"] == "zstd" and "s3_bytes" in r]
            if sizes:
                log(f"{ds.size.name}: timing moto's CompleteMultipartUpload of a {max(sizes) / 1e6:.0f} MB object")
                emulator[ds.size.name] = sb.complete_probe(max(sizes))
    sb.purge("")
    return records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="250M,1G", help=f"comma-separated, of {sorted(SIZES)}")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--data-dir", type=Path, default=ROOT / "bench" / ".data", help="generated data, reused")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md", help="Markdown report; JSON beside it")
    ap.add_argument("--smoke", action="store_true", help="one tiny run of each competitor (the test's setting)")
    ap.add_argument("--groups", help=f"only these groups (comma-separated, of {GROUP_ORDER}; what they need runs too)")
    ap.add_argument("--prepare", action="store_true", help="only generate (or check) the cached data, then exit")
    ap.add_argument("--report-only", action="store_true", help="re-render the Markdown from the JSON beside --out")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops PostgreSQL and moto
    json_path = args.out.with_suffix(".json")
    if args.report_only:
        args.out.write_text(report.render(json.loads(json_path.read_text())))
        return 0
    if args.smoke:
        args.sizes, args.runs = "smoke", 1
    sizes = [SIZES[s] for s in args.sizes.split(",")]
    have_aws = shutil.which("aws", path=f"{BIN}:{os.environ.get('PATH', '')}") is not None
    if not have_aws:
        log("awscli not found: the plan's pipeline is skipped (make bench installs it)")
    features = available_features()
    for name, (_, why) in FEATURES.items():
        if name not in features:
            log(f"skipping the competitors that need it: {why}")
    load_start = load_average()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.data_dir.mkdir(parents=True, exist_ok=True)
    work_root = Path(tempfile.mkdtemp(prefix="xai-bench-", dir=args.data_dir))
    from recovery.local.node_api_stub import NodeApiStub

    pg = CachedCluster(args.data_dir / "pg")
    moto: DaemonMoto | None = None
    records: list[dict[str, Any]] = []
    datasets: dict[str, Any] = {}
    emulator: dict[str, Any] = {}  # size -> moto's CompleteMultipartUpload probe
    try:
        pg.start()
        moto = DaemonMoto(work_root / "aws")
        with NodeApiStub(block_height=1) as node:
            for size in sizes:
                t = time.perf_counter()
                ds = ensure_dataset(args.data_dir, size, pg)
                log(f"{size.name}: data ready in {time.perf_counter() - t:.0f}s (plain dump {ds.plain_bytes / 1e6:.0f} MB, "
                    f"chain {ds.chain_bytes / 1e6:.0f} MB)")
                if args.prepare:
                    continue
                datasets[size.name] = {"rows": size.rows, "plain_dump_bytes": ds.plain_bytes, "chain_bytes": ds.chain_bytes,
                                       "database": ds.db, "generator": ds.info}
                work = work_root / size.name
                work.mkdir()
                groups = None
                if args.groups:
                    groups = set(args.groups.split(","))
                    groups |= {NEEDS[g] for g in groups if g in NEEDS}
                records += run_size(ds, pg, moto, args.runs, work, have_aws, node.url, groups, features, emulator)
    finally:
        if moto is not None:
            moto.stop()
        pg.stop()
        shutil.rmtree(work_root, ignore_errors=True)
    if args.prepare:
        return 0
    doc = {
        "started_at": started,
        "ended_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {**machine(), "python": platform.python_version(), "load_average_start": [round(x, 2) for x in load_start],
                    "load_average_end": [round(x, 2) for x in load_average()], "versions": _versions()},
        "runs_per_competitor": args.runs,
        "objectives": report.stack_objectives(),
        "emulator_complete": emulator,
        "datasets": datasets,
        "runs": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(doc, indent=1) + "\n")
    args.out.write_text(report.render(doc))
    log(f"wrote {args.out} and {json_path}")
    return 0


def _versions() -> dict[str, str]:
    def out(cmd: list[str]) -> str:
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            return (p.stdout.strip() or p.stderr.strip()).splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"

    import moto

    return {"postgresql": out(["pg_dump", "--version"]), "moto": moto.__version__,
            "awscli": out([str(BIN / "aws"), "--version"]) if (BIN / "aws").exists() else out(["aws", "--version"]),
            "gzip": out(["gzip", "--version"]), "zstd": out(["zstd", "--version"]), "tar": out(["tar", "--version"])}


if __name__ == "__main__":
    sys.exit(main())
