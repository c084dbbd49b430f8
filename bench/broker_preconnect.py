"""How long Mosquitto 2.0.11 keeps a connection that never completes its CONNECT (issue 8).

2.0.11 has no CONNECT or handshake timeout option; a new connection gets a keepalive of 60 s
before its CONNECT (src/context.c, ``context__init``) and the keepalive check drops it after
1.5 x that. This measures it for a silent socket and for one that sent half a CONNECT, and, as
the in-run baseline, for a client that connected with keepalive 10 s and then went silent.
Prints ``preconnect_drop_s``, ``partial_connect_drop_s``, ``keepalive10_drop_s`` and the ratio.
Takes about 100 s.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import figure
from meltemi.services import Mosquitto, free_port


def _connect_keepalive10() -> bytes:
    body = b"\x00\x04MQTT\x04\x02\x00\x0a\x00\x05bench"  # clean session, keepalive 10 s
    return bytes([0x10, len(body)]) + body


def _time_to_close(sock: socket.socket, started: float, out: dict[str, float], name: str) -> None:
    sock.settimeout(300)
    try:
        while sock.recv(64):
            pass
    except OSError:
        pass
    out[name] = time.monotonic() - started


def main() -> None:
    """Run the three sockets against an embedded broker; print the figures."""
    with tempfile.TemporaryDirectory(prefix="meltemi-bench-") as tmp:
        broker = Mosquitto(Path(tmp) / "mosquitto", free_port())
        broker.start_and_wait()
        try:
            started = time.monotonic()
            silent = socket.create_connection(("127.0.0.1", broker.port))
            partial = socket.create_connection(("127.0.0.1", broker.port))
            partial.sendall(b"\x10")
            baseline = socket.create_connection(("127.0.0.1", broker.port))
            baseline.sendall(_connect_keepalive10())
            results: dict[str, float] = {}
            threads = [
                threading.Thread(target=_time_to_close, args=(s, started, results, n))
                for s, n in ((silent, "silent"), (partial, "partial"), (baseline, "baseline"))
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(300)
            for sock in (silent, partial, baseline):
                sock.close()
        finally:
            broker.stop()
    figure("preconnect_drop_s", results["silent"], "s")
    figure("partial_connect_drop_s", results["partial"], "s")
    figure("keepalive10_drop_s", results["baseline"], "s")
    figure("preconnect_vs_keepalive10_ratio", results["silent"] / results["baseline"], "x")


if __name__ == "__main__":
    main()
