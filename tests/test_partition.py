"""`recovery partition wait|rejoin` against the local environment's simulated node, which really
loses its peers (/admin/partition) and regains them one at a time."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from cli_env import isolated_env, run_cli

ROOT = Path(__file__).resolve().parent.parent


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run_cli(env, *args, timeout=timeout)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("partition") / "env"
    e = isolated_env()
    e["RECOVERY_LOCAL_DIR"] = str(d)
    e["RECOVERY_JOURNAL_DIR"] = str(d.parent / "journal")
    try:  # inside: a `local up` that fails or hangs halfway must not leave its servers running
        up = cli(e, "local", "up", "--mine-interval", "0.5", timeout=300)  # a hang guard: slow on a loaded machine
        assert up.returncode == 0, up.stderr
        e["_NODE"] = json.loads((d / "state.json").read_text())["node"]["url"]
        yield e
    finally:
        assert cli(e, "local", "down").returncode == 0


def node(env: dict[str, str], path: str, body: Any = None) -> dict[str, Any]:
    req = urllib.request.Request(env["_NODE"] + path, data=None if body is None else json.dumps(body).encode(),
                                 method="GET" if body is None else "POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return dict(json.loads(resp.read()))


def heal(env: dict[str, str]) -> None:
    node(env, "/admin/heal", {})
    assert cli(env, "partition", "wait", "--stack", "local", "--timeout", "20s", "--interval", "0.2s").returncode == 0


def test_wait_on_a_healthy_node_returns_at_once(env: dict[str, str]) -> None:
    r = cli(env, "partition", "wait", "--stack", "local", "--json", "--interval", "0.2s")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["healed"] and doc["peers"] >= 5 and doc["synced"] and doc["consensus_state"] == "synced"


def test_wait_times_out_with_a_summary_and_its_own_code(env: dict[str, str]) -> None:
    node(env, "/admin/partition", {})
    try:
        r = cli(env, "partition", "wait", "--stack", "local", "--timeout", "1.5s", "--interval", "0.3s")
        assert r.returncode == 34, r.stderr
        errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1
        assert "did not heal within 1.5s" in errors[0] and "peers 0->0 (need 5)" in errors[0]
        assert "partitioned" in errors[0] and "partition rejoin" in errors[0]
        assert r.stderr.count("partition wait:") >= 3  # progress while polling
    finally:
        heal(env)


def test_wait_follows_the_network_healing(env: dict[str, str]) -> None:
    node(env, "/admin/partition", {"heal_after_s": 1.0})
    r = cli(env, "partition", "wait", "--stack", "local", "--min-peers", "8", "--timeout", "30s", "--interval", "0.3s")
    assert r.returncode == 0, r.stderr
    polls = [line for line in r.stderr.splitlines() if line.startswith("partition wait:")]
    assert "peers 0" in polls[0] and "peers 8" in polls[-1] and len(polls) >= 3
    assert "network healed: 8 peers" in r.stdout


@pytest.mark.parametrize("peers,why", [
    ("10.0.1.11", "expected HOST:PORT"),
    ("10.0.1.11:0", "port must be a number from 1 to 65535"),
    ("10.0.1.11:8333,10.0.2.11:99999", "port must be"),
    ("10.0.1.11:8333,10.0.1.11:8333", "duplicates entry 1"),
    ("10.0.1.300:8333", "not a valid IPv4 address"),
    ("bad_host!:8333", "not a valid host name"),
    ("10.0.1.11:8333,,10.0.2.11:8333", "entry 2 is empty"),
    ("[zz::1]:8333", "not an IPv6 address"),
])
def test_rejoin_refuses_a_bad_peer_list_before_contacting_the_node(env: dict[str, str], peers: str, why: str) -> None:
    before = node(env, "/api/v1/network/info")
    r = cli(env, "partition", "rejoin", "--stack", "local", "--peers", peers)
    assert r.returncode == 4, r.stderr
    assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1 and why in r.stderr
    assert node(env, "/api/v1/network/info")["configured_peers"] == before["configured_peers"]


def test_rejoin_heals_a_partition_and_checks_consensus(env: dict[str, str]) -> None:
    node(env, "/admin/partition", {})
    assert node(env, "/api/v1/blockchain/info")["consensus_state"] == "partitioned"
    r = cli(env, "partition", "rejoin", "--stack", "local", "--peers", "10.0.1.11:8333,node-b.xai.internal:8333",
            "--interval", "0.3s", "--timeout", "30s", "--json")
    assert r.returncode == 0, r.stderr
    journal = json.loads(r.stdout)
    assert [(s["name"], s["status"]) for s in journal["steps"]] == [
        ("rejoin", "ok"), ("wait-healed", "ok"), ("check-consensus", "ok")]
    assert journal["steps"][2]["detail"]["consensus_state"] == "synced"
    info = node(env, "/api/v1/network/info")
    assert info["configured_peers"][:2] == ["10.0.1.11:8333", "node-b.xai.internal:8333"]
    # healed already: a rerun posts nothing (the step's check holds)
    r = cli(env, "partition", "rejoin", "--stack", "local", "--peers", "10.0.2.12:8333", "--json", "--interval", "0.3s")
    assert r.returncode == 0 and json.loads(r.stdout)["steps"][0]["status"] == "held"


def test_rejoin_timeout_exits_34(env: dict[str, str]) -> None:
    node(env, "/admin/partition", {})
    try:
        # the node reconnects one peer per 0.5 s: 8 peers cannot be back within 1 s
        r = cli(env, "partition", "rejoin", "--stack", "local", "--peers", "10.0.1.11:8333", "--min-peers", "8",
                "--timeout", "1s", "--interval", "0.3s")
        assert r.returncode == 34, r.stderr
        assert "did not heal within 1s" in r.stderr.splitlines()[-1]
    finally:
        heal(env)


def test_a_loopback_peer_is_real_it_connects_only_while_it_answers(env: dict[str, str]) -> None:
    """The DR node is a real peer: a rejoin toward it connects; toward a closed port it does not."""
    import socket

    dr = json.loads((Path(env["RECOVERY_LOCAL_DIR"]) / "state.json").read_text())["dr"]["node"]["url"]
    dr_addr = dr.split("//", 1)[1].rstrip("/")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    node(env, "/admin/partition", {})
    try:
        r = cli(env, "partition", "rejoin", "--stack", "local", "--peers", f"{closed},{dr_addr}",
                "--interval", "0.3s", "--timeout", "30s", "--json")
        assert r.returncode == 0, r.stderr
        info = node(env, "/api/v1/network/info")
        connected = [p["address"] for p in info["peers"]]
        assert dr_addr in connected and closed not in connected
        assert info["unreachable_peers"] == [closed]
    finally:
        heal(env)
