"""The XAI node API client against a real HTTP server that speaks the plan's endpoints."""

from __future__ import annotations

import socket
import time

import pytest
from _engine_fixtures import node  # noqa: F401 - fixture

from recovery.errors import DeadlineError, NodeApiError
from recovery.local.node_api_stub import NodeApiStub
from recovery.node import NodeClient, SyncProgress, describe_progress


def client(stub: NodeApiStub, **kw: object) -> NodeClient:
    kw.setdefault("backoff_s", 0.01)
    return NodeClient(stub.url, **kw)  # type: ignore[arg-type]


def test_reads_every_endpoint_of_the_plan(node: NodeApiStub) -> None:
    st = node.state
    st.block_height, st.peer_count, st.transaction_count, st.is_mining = 4242, 7, 13, True
    c = client(node)
    info = c.blockchain_info()
    assert (info.block_height, info.is_synced, info.consensus_state) == (4242, True, "healthy")
    assert c.verify() is True
    assert c.peer_count() == 7
    assert c.mempool_size() == 13
    assert c.is_mining() is True
    st.is_valid = False
    assert c.verify() is False and c.verify_report()["is_valid"] is False


def test_rejoin_posts_the_peer_addresses(node: NodeApiStub) -> None:
    answer = client(node).rejoin(["10.0.1.11:8333", "10.0.2.11:8333"])
    assert node.state.rejoined == [["10.0.1.11:8333", "10.0.2.11:8333"]]
    assert answer["status"] == "rejoining"
    assert ("POST", "/api/v1/network/rejoin") in node.state.requests


def test_transient_503s_are_retried(node: NodeApiStub) -> None:
    node.state.fail_next(2, status=503)
    assert client(node, retries=3).blockchain_info().block_height == 100
    assert node.state.requests.count(("GET", "/api/v1/blockchain/info")) == 3


def test_persistent_5xx_is_one_line_error(node: NodeApiStub) -> None:
    node.state.fail_next(10, status=503)
    with pytest.raises(NodeApiError) as err:
        client(node, retries=2).peer_count()
    msg = str(err.value)
    assert "GET /api/v1/network/info" in msg and node.url in msg and "\n" not in msg
    assert err.value.exit_code == NodeApiError.exit_code


def test_http_error_status_is_reported(node: NodeApiStub) -> None:
    node.state.fail_next(1, status=500)
    with pytest.raises(NodeApiError, match="answered HTTP 500"):
        client(node).is_mining()


def test_rejoin_is_not_repeated_after_the_request_was_sent(node: NodeApiStub) -> None:
    node.state.fail_next(1, status=503)
    with pytest.raises(NodeApiError, match="HTTP 503"):
        client(node).rejoin(["10.0.1.11:8333"])
    assert node.state.requests.count(("POST", "/api/v1/network/rejoin")) == 1


def test_not_json_and_missing_fields(node: NodeApiStub) -> None:
    node.state.garbage_next = 1
    with pytest.raises(NodeApiError, match="not JSON"):
        client(node).blockchain_info()
    node.state.peer_count = None  # type: ignore[assignment]
    with pytest.raises(NodeApiError, match="without a valid 'peer_count'"):
        client(node).peer_count()


def test_unreachable_node() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = NodeClient(f"http://127.0.0.1:{port}", retries=1, backoff_s=0.01)
    with pytest.raises(NodeApiError) as err:
        c.blockchain_info()
    assert "unreachable" in str(err.value) and "refused" in str(err.value).lower()
    assert "\n" not in str(err.value)


def test_slow_node_times_out(node: NodeApiStub) -> None:
    node.state.delay_s = 1.0
    t0 = time.monotonic()
    with pytest.raises(NodeApiError, match="within 0.2s"):
        client(node, timeout_s=0.2, retries=0).blockchain_info()
    assert time.monotonic() - t0 < 1.0


def test_wait_for_sync_catches_up_with_the_reference(node: NodeApiStub) -> None:
    with NodeApiStub(block_height=150) as ref:
        node.state.sync_towards(150, blocks_per_poll=20)
        seen: list[SyncProgress] = []
        info = client(node).wait_for_sync(10, reference=client(ref), progress=seen.append, interval_s=0.01)
    assert info.block_height == 150 and info.is_synced
    assert seen[0].height == 120 and seen[0].reference_height == 150 and seen[0].behind == 30
    assert [p.height for p in seen] == [120, 140, 150]
    assert "height 120/150 (30 behind)" in describe_progress(seen[0])


def test_wait_for_sync_requires_the_reference_height_not_just_is_synced(node: NodeApiStub) -> None:
    with NodeApiStub(block_height=500) as ref:  # node says synced but is far behind the network
        with pytest.raises(DeadlineError) as err:
            client(node).wait_for_sync(0.3, reference=client(ref), interval_s=0.05)
    msg = str(err.value)
    assert "did not sync within 0.3s" in msg and "height 100 of 500" in msg
    assert err.value.exit_code == DeadlineError.exit_code


def test_wait_for_sync_rides_out_a_restarting_node(node: NodeApiStub) -> None:
    node.state.fail_next(3, status=502)
    seen: list[SyncProgress] = []
    info = client(node, retries=0).wait_for_sync(5, progress=seen.append, interval_s=0.01)
    assert info.is_synced
    assert [p.error is not None for p in seen] == [True, True, True, False]
    assert "HTTP 502" in (seen[0].error or "")


def test_wait_for_sync_deadline_when_node_never_syncs(node: NodeApiStub) -> None:
    node.state.is_synced = False
    seen: list[SyncProgress] = []
    t0 = time.monotonic()
    with pytest.raises(DeadlineError, match="synced=False"):
        client(node).wait_for_sync(0.5, progress=seen.append, interval_s=0.1)
    assert 0.4 < time.monotonic() - t0 < 3
    assert len(seen) >= 3 and seen[-1].remaining_s == 0
