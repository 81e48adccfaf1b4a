"""Client for the XAI node API (the DR plan's endpoints), built on requests + urllib3 Retry.

Every failure becomes a one-line NodeApiError naming the node, the endpoint and what went wrong.
GETs are retried on connection errors and 502/503/504 with exponential backoff; the POST (rejoin)
is retried only when the connection could not be made, never after the request was sent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from recovery.errors import DeadlineError, NodeApiError

DEFAULT_URL = "http://localhost:8080"


@dataclass(frozen=True)
class BlockchainInfo:
    block_height: int
    is_synced: bool
    consensus_state: str | None


@dataclass(frozen=True)
class SyncProgress:
    """One poll of wait_for_sync, for a progress display."""

    height: int | None
    reference_height: int | None
    is_synced: bool
    elapsed_s: float
    remaining_s: float
    error: str | None = None  # why this poll could not read the node (it keeps trying)

    @property
    def behind(self) -> int | None:
        if self.height is None or self.reference_height is None:
            return None
        return max(0, self.reference_height - self.height)


class NodeClient:
    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        name: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.name = name or self.base_url
        self.session = requests.Session()
        retry = Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            backoff_factor=backoff_s,
            status_forcelist=(502, 503, 504),
            allowed_methods=frozenset({"GET"}),
            raise_on_status=False,
            respect_retry_after_header=True,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- transport ----------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        where = f"{method} {path} on node {self.name}"
        try:
            resp = self.session.request(method, self.base_url + path, json=body, timeout=self.timeout_s)
        except requests.exceptions.Timeout:
            raise NodeApiError(
                f"{where} did not answer within {self.timeout_s:g}s", "check the node is up and not overloaded"
            ) from None
        except requests.exceptions.RetryError as exc:
            raise NodeApiError(f"{where} kept failing after retries: {_reason(exc)}", "check the node's logs") from None
        except requests.exceptions.ConnectionError as exc:
            if _reason(exc) == "timed out":  # a read timeout once retries are spent lands here
                raise NodeApiError(
                    f"{where} did not answer within {self.timeout_s:g}s",
                    "check the node is up and not overloaded",
                ) from None
            raise NodeApiError(
                f"{where} is unreachable: {_reason(exc)}", "check the node is running and the URL is right"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise NodeApiError(f"{where} failed: {_reason(exc)}") from None
        if resp.status_code >= 400:
            snippet = resp.text.strip().replace("\n", " ")[:120]
            raise NodeApiError(
                f"{where} answered HTTP {resp.status_code}" + (f": {snippet}" if snippet else ""),
                "check the node's logs",
            )
        try:
            data = resp.json()
        except ValueError:
            raise NodeApiError(f"{where} answered something that is not JSON", "check the URL points at the node API") from None
        if not isinstance(data, dict):
            raise NodeApiError(f"{where} answered a JSON {type(data).__name__}, not an object")
        return data

    def _field(self, data: dict[str, Any], path: str, key: str, kind: type | tuple[type, ...]) -> Any:
        value = data.get(key)
        # bool is an int in Python; a height must not be True.
        if value is None or not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise NodeApiError(
                f"GET {path} on node {self.name} answered without a valid '{key}' (got {value!r})",
                "check the node version speaks the v1 API",
            )
        return value

    def _get(self, path: str) -> dict[str, Any]:
        return self._request("GET", path)

    # -- the plan's endpoints -----------------------------------------------------------------

    def blockchain_info(self) -> BlockchainInfo:
        path = "/api/v1/blockchain/info"
        data = self._get(path)
        state = data.get("consensus_state")
        return BlockchainInfo(
            block_height=self._field(data, path, "block_height", int),
            is_synced=self._field(data, path, "is_synced", bool),
            consensus_state=str(state) if state is not None else None,
        )

    def block_height(self) -> int:
        return self.blockchain_info().block_height

    def verify(self) -> bool:
        """The node's own chain verification (``is_valid``)."""
        path = "/api/v1/blockchain/verify"
        return bool(self._field(self._get(path), path, "is_valid", bool))

    def verify_report(self) -> dict[str, Any]:
        """The verify endpoint's whole answer, for the journal."""
        path = "/api/v1/blockchain/verify"
        data = self._get(path)
        self._field(data, path, "is_valid", bool)
        return data

    def peer_count(self) -> int:
        path = "/api/v1/network/info"
        return int(self._field(self._get(path), path, "peer_count", int))

    def connected_peers(self) -> list[str]:
        """Addresses of the connected peers, when the node lists them (``peers`` in network/info)."""
        peers = self._get("/api/v1/network/info").get("peers") or []
        return [str(p["address"]) for p in peers if isinstance(p, dict) and p.get("connected") and p.get("address")]

    def mempool_size(self) -> int:
        path = "/api/v1/mempool/info"
        return int(self._field(self._get(path), path, "transaction_count", int))

    def is_mining(self) -> bool:
        path = "/api/v1/node/status"
        return bool(self._field(self._get(path), path, "is_mining", bool))

    def tip(self) -> tuple[int, str | None]:
        """Height and tip hash from one read of the info endpoint, so both name the same block."""
        path = "/api/v1/blockchain/info"
        data = self._get(path)
        tip_hash = data.get("tip_hash")
        return self._field(data, path, "block_height", int), str(tip_hash) if tip_hash is not None else None

    def blocks(self, from_height: int, limit: int = 1) -> list[dict[str, Any]]:
        """Up to ``limit`` blocks from ``from_height`` up (``GET /api/v1/blocks``)."""
        blocks = self._get(f"/api/v1/blocks?from={int(from_height)}&limit={int(limit)}").get("blocks") or []
        return [b for b in blocks if isinstance(b, dict)]

    def rejoin(self, peer_addresses: list[str]) -> dict[str, Any]:
        """POST /api/v1/network/rejoin with ``{"peer_addresses": [...]}``; returns the answer."""
        if not peer_addresses or not all(isinstance(p, str) and p for p in peer_addresses):
            raise NodeApiError("rejoin needs at least one peer address like 10.0.1.11:8333")
        return self._request("POST", "/api/v1/network/rejoin", {"peer_addresses": list(peer_addresses)})

    # -- waiting ------------------------------------------------------------------------------

    def wait_for_sync(
        self,
        deadline: float,
        reference: NodeClient | None = None,
        progress: Callable[[SyncProgress], None] | None = None,
        *,
        interval_s: float = 5.0,
        tolerance: int = 0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> BlockchainInfo:
        """Poll until the node says ``is_synced`` and, with a ``reference`` node, its height is within
        ``tolerance`` blocks of the reference's. ``deadline`` is the most seconds to wait.

        Errors reading either node during the wait (a node restarting refuses connections) are
        shown through ``progress`` and polling goes on; at the deadline DeadlineError says how far
        the node got.
        """
        start = clock()
        last: SyncProgress | None = None
        while True:
            height: int | None = None
            ref_height: int | None = None
            synced = False
            error: str | None = None
            info: BlockchainInfo | None = None
            try:
                info = self.blockchain_info()
                height, synced = info.block_height, info.is_synced
                if reference is not None:
                    ref_height = reference.block_height()
            except NodeApiError as exc:
                error = exc.problem
            elapsed = clock() - start
            last = SyncProgress(height, ref_height, synced, elapsed, max(0.0, deadline - elapsed), error)
            if progress is not None:
                progress(last)
            caught_up = reference is None or (
                height is not None and ref_height is not None and height + tolerance >= ref_height
            )
            if error is None and synced and caught_up and info is not None:
                return info
            if elapsed >= deadline:
                break
            sleep(min(interval_s, max(0.0, deadline - elapsed)))
        got = "no answer" if last.height is None else f"height {last.height}"
        if last.reference_height is not None:
            got += f" of {last.reference_height} on the reference"
        if last.error:
            got += f"; last error: {last.error}"
        raise DeadlineError(
            f"node {self.name} did not sync within {deadline:g}s ({got}, synced={last.is_synced})",
            "check its peers and logs, then rerun to keep waiting",
        )


def _reason(exc: BaseException) -> str:
    """The innermost useful reason out of requests' nested exceptions, on one line."""
    seen = exc
    for _ in range(6):
        nxt = getattr(seen, "reason", None) or (seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None)
        if nxt is None or nxt is seen:
            break
        seen = nxt
    text = str(seen)
    for marker in ("Connection refused", "Name or service not known", "timed out", "too many 5"):
        if marker.lower() in text.lower():
            return marker if marker != "too many 5" else "too many 5xx responses"
    if "Max retries exceeded" in text and "responses" in text:
        return "too many error responses"
    return text.replace("\n", " ")[:160]


__all__ = ["DEFAULT_URL", "BlockchainInfo", "NodeClient", "SyncProgress", "describe_progress"]


def describe_progress(p: SyncProgress) -> str:
    """One line for a progress display: 'height 120/150 (30 behind), synced=no, 42s left'."""
    if p.height is None:
        where = "no answer yet"
    elif p.reference_height is not None:
        where = f"height {p.height}/{p.reference_height} ({p.behind} behind)"
    else:
        where = f"height {p.height}"
    line = f"{where}, synced={'yes' if p.is_synced else 'no'}, {p.remaining_s:.0f}s left"
    return line + (f" ({p.error})" if p.error else "")
