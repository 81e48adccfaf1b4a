"""The DR plan's scenario 4 (network partition / consensus failure) against the node API.

``wait_healed`` is the plan's poll loop (peer count and sync state, every ``interval``), with
progress and a deadline: healed means ``is_synced`` and at least ``min_peers`` peers. It changes
nothing, so it is not journaled: rerunning it is resuming it.

``rejoin`` is a runbook (journaled like the others, in the stack's bucket):

1. ``rejoin``            POST /api/v1/network/rejoin with the validated peer list. Check: the node
                         is already healed (then nothing is posted).
2. ``wait-healed``       as above, until the deadline.
3. ``check-consensus``   ``consensus_state`` must be ``synced``.

The peer list is validated before anything is sent: HOST:PORT entries (IPv4, ``[IPv6]`` or a DNS
name; port 1-65535), no duplicates, at most 64.
"""

from __future__ import annotations

import ipaddress
import re
import time
from dataclasses import dataclass
from typing import Any, Callable

from recovery.errors import InputError, NodeApiError, PartitionNotHealedError, VerificationFailed
from recovery.node import NodeClient
from recovery.engine.journal import Journal, JournalStore
from recovery.engine.runbook import Runbook, execute
from recovery.engine.steps import Step, StepContext, Target

MAX_PEERS = 64
_HOST_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def parse_peers(text: str) -> list[str]:
    """'10.0.1.11:8333,node-b.xai.internal:8333' -> normalised list; InputError naming the bad entry."""
    raw = [p.strip() for p in (text or "").split(",")]
    if not text or not any(raw):
        raise InputError("--peers is empty", "give HOST:PORT entries, e.g. --peers 10.0.1.11:8333,10.0.2.11:8333")
    if len(raw) > MAX_PEERS:
        raise InputError(f"--peers has {len(raw)} entries; at most {MAX_PEERS} are accepted", "list the largest partition's nodes only")
    out: list[str] = []
    for i, entry in enumerate(raw, 1):
        where = f"--peers entry {i} {entry!r}"
        if not entry:
            raise InputError(f"--peers entry {i} is empty", "remove the stray comma")
        if entry.startswith("["):
            host, sep, port = entry[1:].partition("]:")
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise InputError(f"{where}: {host!r} is not an IPv6 address", "use [IPv6]:PORT") from None
            host = f"[{host.lower()}]"
        else:
            host, sep, port = entry.rpartition(":")
            if not sep or not host:
                raise InputError(f"{where}: expected HOST:PORT", "e.g. 10.0.1.11:8333")
            if re.fullmatch(r"[0-9.]+", host):
                try:
                    ipaddress.IPv4Address(host)
                except ValueError:
                    raise InputError(f"{where}: {host!r} is not a valid IPv4 address", "check the address") from None
            elif not _HOST_RE.match(host):
                raise InputError(f"{where}: {host!r} is not a valid host name", "use an IP address or DNS name")
            host = host.lower()
        if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise InputError(f"{where}: port must be a number from 1 to 65535", "e.g. 10.0.1.11:8333")
        addr = f"{host}:{int(port)}"
        if addr in out:
            raise InputError(f"{where} duplicates entry {out.index(addr) + 1}", "list each peer once")
        out.append(addr)
    return out


@dataclass
class Poll:
    peers: int | None
    synced: bool | None
    consensus_state: str | None
    height: int | None
    elapsed_s: float
    error: str | None = None

    def line(self) -> str:
        if self.error:
            return f"{self.elapsed_s:5.0f}s  node not answering: {self.error}"
        return (f"{self.elapsed_s:5.0f}s  peers {self.peers}, synced {self.synced}, "
                f"consensus {self.consensus_state}, height {self.height}")


def poll(node: NodeClient, start: float) -> Poll:
    try:
        peers = node.peer_count()
        info = node.blockchain_info()
    except NodeApiError as exc:
        return Poll(None, None, None, None, time.monotonic() - start, exc.problem)
    return Poll(peers, info.is_synced, info.consensus_state, info.block_height, time.monotonic() - start)


def wait_healed(node: NodeClient, *, min_peers: int, timeout_s: float, interval_s: float = 10.0,
                progress: Callable[[Poll], None] | None = None) -> Poll:
    """Poll until synced with at least ``min_peers`` peers; PartitionNotHealedError at the deadline."""
    start = time.monotonic()
    first = last = None
    while True:
        last = poll(node, start)
        first = first or last
        if progress is not None:
            progress(last)
        if last.error is None and last.synced and (last.peers or 0) >= min_peers:
            return last
        if last.elapsed_s >= timeout_s:
            break
        time.sleep(min(interval_s, max(0.05, timeout_s - last.elapsed_s)))
    seen = "no answer" if last.peers is None else (
        f"peers {first.peers}->{last.peers} (need {min_peers}), synced {last.synced}, consensus {last.consensus_state}")
    raise PartitionNotHealedError(
        f"node {node.name} did not heal within {timeout_s:g}s ({seen}" + (f"; last error: {last.error}" if last.error else "") + ")",
        "if the partition persists, rejoin the largest partition: `recovery partition rejoin --peers HOST:PORT,...`")


@dataclass
class RejoinOptions:
    peers: list[str]
    node_url: str
    min_peers: int = 5
    timeout_s: float = 900.0
    interval_s: float = 10.0


def rejoin_runbook(stack: str, opts: RejoinOptions, node: NodeClient | None = None) -> Runbook:
    node = node or NodeClient(opts.node_url)

    def healed(ctx: StepContext) -> bool | dict[str, Any]:
        p = poll(node, time.monotonic())
        ok = p.error is None and p.synced and (p.peers or 0) >= opts.min_peers
        return {"already_healed": True, "peers": p.peers} if ok else False

    def do_rejoin(ctx: StepContext) -> dict[str, Any]:
        answer = node.rejoin(opts.peers)
        return {"peers_sent": len(opts.peers), "node_answer": answer.get("status"),
                "peer_count": answer.get("peer_count")}

    def do_wait(ctx: StepContext) -> dict[str, Any]:
        last = wait_healed(node, min_peers=opts.min_peers, timeout_s=opts.timeout_s, interval_s=opts.interval_s,
                           progress=lambda p: ctx.info(p.line()))
        return {"peers": last.peers, "synced": last.synced, "waited_s": round(last.elapsed_s, 1)}

    def check_consensus(ctx: StepContext) -> dict[str, Any]:
        info = node.blockchain_info()
        if info.consensus_state != "synced":
            raise VerificationFailed(f"consensus_state is {info.consensus_state!r} after the rejoin, expected 'synced'",
                                     "check the node's logs and its peers' chains")
        return {"consensus_state": info.consensus_state, "height": info.block_height}

    return Runbook("partition-rejoin", [
        Step("rejoin", do_rejoin, check=healed, touches=f"POST /api/v1/network/rejoin with {len(opts.peers)} peers"),
        Step("wait-healed", do_wait, touches="nothing (polls peers and sync)"),
        Step("check-consensus", check_consensus, touches="nothing (reads consensus_state)"),
    ], Target(stack), destructive=False,
        params={"peers": opts.peers, "node_url": opts.node_url, "min_peers": opts.min_peers})


def rejoin(stack: str, opts: RejoinOptions, store: JournalStore, *, dry_run: bool = False,
           reporter: Any = None) -> tuple[Journal | None, dict[str, Any] | None]:
    return execute(rejoin_runbook(stack, opts), store, yes=True, dry_run=dry_run, reporter=reporter)


__all__ = ["parse_peers", "wait_healed", "RejoinOptions", "rejoin", "rejoin_runbook", "Poll"]
