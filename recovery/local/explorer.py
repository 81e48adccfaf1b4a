"""The local block explorer: a small real process that serves blocks from the PostgreSQL index.

    python -m recovery.local.explorer start --run-dir R --name xai-explorer --data-dir D [--port P]
    python -m recovery.local.explorer stop|status --run-dir R --name xai-explorer

Its state is what a real explorer keeps beside its binary, in ``D``:

- ``explorer.json``  its configuration: ``pg_dsn`` (a libpq DSN naming a passfile, never a
  password), ``cache_blocks``, ``refresh_seconds``;
- ``cache/blocks.json`` its cache: the newest ``cache_blocks`` blocks, refreshed from the index.

It refuses to start without a readable configuration (as a real service would), and answers
``GET /health`` with 503 once its configuration or cache is gone, the index is unreachable, or the
cache has fallen behind the index; so killing it, deleting its state or starving it is damage a
health check sees. ``GET /api/blocks/latest`` and ``/api/blocks/<height>`` serve blocks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from recovery.local.service_process import control, serve_json

CONFIG = "explorer.json"
CACHE = "cache/blocks.json"
HEALTH = "/health"
# The cache may trail the index by a few refreshes before the explorer calls itself unhealthy.
MAX_LAG_BLOCKS = 10


def write_config(data_dir: Path, pg_dsn: str, *, cache_blocks: int = 20, refresh_seconds: float = 1.0,
                 pg_service_file: str | None = None) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / CONFIG
    path.write_text(json.dumps({"pg_dsn": pg_dsn, "pg_service_file": pg_service_file, "cache_blocks": cache_blocks,
                                "refresh_seconds": refresh_seconds}, indent=2) + "\n")
    return path


def load_config(data_dir: Path) -> dict[str, Any]:
    doc = json.loads((data_dir / CONFIG).read_text())
    if not isinstance(doc, dict) or not isinstance(doc.get("pg_dsn"), str):
        raise ValueError(f"{data_dir / CONFIG} has no pg_dsn")
    return doc


class Explorer:
    def __init__(self, data_dir: Path, config: dict[str, Any]) -> None:
        self.data_dir = data_dir
        self.config = config
        if config.get("pg_service_file"):  # libpq finds a DSN's "service=NAME" there (a cutover rewrites its host)
            os.environ["PGSERVICEFILE"] = str(config["pg_service_file"])
        self.db_height: int | None = None
        self.db_error: str | None = None
        self.stop = threading.Event()

    def _query(self, q: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.config["pg_dsn"], connect_timeout=3) as c:
            return list(c.execute(q, args).fetchall())

    def block(self, height: int | None) -> dict[str, Any] | None:
        cols = "height, hash, prev_hash, \"timestamp\", tx_count"
        rows = self._query(f"SELECT {cols} FROM blockchain ORDER BY height DESC LIMIT 1" if height is None
                           else f"SELECT {cols} FROM blockchain WHERE height = %s", () if height is None else (height,))
        if not rows:
            return None
        h, hs, prev, ts, txs = rows[0]
        return {"height": h, "hash": hs, "prev_hash": prev, "timestamp": ts.isoformat(), "tx_count": txs}

    def refresh(self) -> None:
        """Newest blocks into the cache file (atomically), and the index's height for /health."""
        try:
            rows = self._query("SELECT height, hash FROM blockchain ORDER BY height DESC LIMIT %s",
                               (int(self.config.get("cache_blocks", 20)),))
            self.db_height, self.db_error = (rows[0][0] if rows else -1), None
        except psycopg.Error as exc:
            self.db_error = (str(exc).strip().splitlines() or ["unreachable"])[0]
            return
        cache = self.data_dir / CACHE
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            tmp.write_text(json.dumps({"updated_at": time.time(), "blocks": [{"height": h, "hash": x} for h, x in rows]}))
            os.replace(tmp, cache)
        except OSError:
            pass  # /health reports the missing cache

    def loop(self) -> None:
        while not self.stop.is_set():
            self.refresh()
            self.stop.wait(float(self.config.get("refresh_seconds", 1.0)))

    def health(self) -> tuple[int, dict[str, Any]]:
        problems = []
        if not (self.data_dir / CONFIG).is_file():
            problems.append(f"configuration missing: {self.data_dir / CONFIG}")
        try:
            cached = json.loads((self.data_dir / CACHE).read_text())["blocks"]
            top = cached[0]["height"] if cached else -1
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            top = None
            problems.append("cache missing or unreadable")
        if self.db_error:
            problems.append(f"index unreachable: {self.db_error}")
        elif top is not None and self.db_height is not None and self.db_height - top > MAX_LAG_BLOCKS:
            problems.append(f"cache at {top}, index at {self.db_height}")
        body = {"status": "ok" if not problems else "unhealthy", "problems": problems,
                "latest_height": top, "index_height": self.db_height}
        return (200 if not problems else 503), body


def _answer(ex: Explorer) -> Any:
    def answer(method: str, path: str) -> tuple[int, Any]:
        path = path.rstrip("/")
        if method != "GET":
            return 405, {"error": "GET only"}
        if path == HEALTH:
            return ex.health()
        if not path.startswith("/api/blocks/"):
            return 404, {"error": "not found"}
        ref = path.rsplit("/", 1)[-1]
        if ref != "latest" and not ref.isdigit():
            return 400, {"error": "expected /api/blocks/latest or /api/blocks/<height>"}
        try:
            b = ex.block(None if ref == "latest" else int(ref))
        except psycopg.Error as exc:
            return 503, {"error": f"index unreachable: {(str(exc).strip().splitlines() or ['?'])[0]}"}
        return (200, b) if b else (404, {"error": f"no block {ref}"})

    return answer


def serve(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m recovery.local.explorer serve")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)
    data = Path(args.data_dir)
    try:
        config = load_config(data)
    except (OSError, ValueError) as exc:
        print(f"explorer: cannot start: configuration {data / CONFIG} unreadable ({type(exc).__name__}); "
              "restore it with `recovery restore config`", file=sys.stderr)
        return 2
    ex = Explorer(data, config)
    ex.refresh()
    threading.Thread(target=ex.loop, daemon=True).start()
    serve_json(_answer(ex), args.port, args.run_dir, args.name)
    ex.stop.set()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return serve(argv[1:])
    return control("explorer", HEALTH, argv)


if __name__ == "__main__":
    sys.exit(main())
