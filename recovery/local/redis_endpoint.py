"""The local cache group's primary endpoint: one port that reaches whichever node is primary now.

ElastiCache's primary endpoint is a DNS name that follows a failover, so clients (and the stack's
``cache_endpoint`` output) never change. Locally each node has its own port, so this small process
stands in for that name: each new connection is forwarded to the node ``redis.json`` names primary
at that moment (recovery/local/redis_cache.py). When that node does not answer, the connection is
closed at once, as a client of a lost primary sees it. Connections already open stay on the node
they reached.

    python -m recovery.local.redis_endpoint --state-dir DIR --port PORT
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
from pathlib import Path

# redis_cache.py's names, not imported: this process stays light (that module pulls in the deployer)
HOST = "127.0.0.1"
REDIS_FILE = "redis.json"


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _primary_port(state_dir: Path) -> int | None:
    try:
        cfg = json.loads((state_dir / REDIS_FILE).read_text())
        return int(cfg["nodes"][cfg["primary"]]["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _serve_one(client: socket.socket, state_dir: Path) -> None:
    port = _primary_port(state_dir)
    try:
        if port is None:
            raise OSError("no primary")
        upstream = socket.create_connection((HOST, port), timeout=2)
        upstream.settimeout(None)
    except OSError:
        client.close()
        return
    t = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    t.start()
    _pump(client, upstream)
    t.join(5)
    client.close()
    upstream.close()


def serve(state_dir: Path, port: int) -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((HOST, port))
    srv.listen(64)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        client, _ = srv.accept()
        threading.Thread(target=_serve_one, args=(client, state_dir), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--state-dir", required=True, type=Path)
    ap.add_argument("--port", required=True, type=int)
    args = ap.parse_args(argv)
    serve(args.state_dir, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
