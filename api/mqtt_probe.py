"""Is the broker up? One MQTT CONNECT, and any CONNACK counts as an answer (for ``/health``).

The probe sends no credentials on purpose: a broker with ``use_username_as_clientid`` would let
a probe logged in as the ingester's user take over the ingester's session (RELIABILITY S4). A
broker that refuses anonymous clients still answers with a CONNACK (return code 5), which is
all ``/health`` needs to know. MQTT 3.1.1 §3.1 (CONNECT) and §3.2 (CONNACK).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from pathlib import Path
from typing import Final

_CONNACK: Final = 0x20
_DISCONNECT: Final = b"\xe0\x00"
_KEEPALIVE_S: Final = 10  # seconds announced in CONNECT; the probe leaves long before


def connect_packet(client_id: str) -> bytes:
    """Return an MQTT 3.1.1 CONNECT packet: clean session, no credentials, no will."""
    ident = client_id.encode()
    variable = b"\x00\x04MQTT" + bytes([4, 0x02]) + _KEEPALIVE_S.to_bytes(2, "big")
    payload = len(ident).to_bytes(2, "big") + ident
    body = variable + payload
    return bytes([0x10, len(body)]) + body  # bodies under 128 bytes: one length byte


async def broker_answers(
    host: str, port: int, *, tls: bool = False, ca_file: Path | None = None, timeout_s: float = 2.0
) -> bool:
    """Return True when the broker answers a CONNECT with a CONNACK within ``timeout_s``."""
    context: ssl.SSLContext | None = None
    if tls:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port, ssl=context)
            writer.write(connect_packet(f"meltemi-health-{uuid.uuid4().hex[:12]}"))
            await writer.drain()
            header = await reader.readexactly(4)
            answered = header[0] == _CONNACK and header[1] == 2
            if answered and header[3] == 0:  # accepted: leave politely
                writer.write(_DISCONNECT)
                await writer.drain()
            return answered
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ssl.SSLError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
