"""``meltemi api``: the app under uvicorn, stopping gracefully on SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import sys
from types import FrameType
from typing import Final

import uvicorn

from api.app import create_app
from sensors.settings import Settings

logger = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 5  # in-flight requests get this long; open streams are then closed
KEEP_ALIVE_S = 5  # idle keep-alive connections are closed after this (uvicorn default)


class _Server(uvicorn.Server):
    """uvicorn re-raises a captured SIGINT/SIGTERM after its graceful shutdown; here the
    graceful shutdown is the whole answer, so ``run`` returns 0 instead of dying by signal."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


SWITCH_INTERVAL_S: Final = 0.001


def run(settings: Settings) -> int:
    """Serve the API on settings.api_host:api_port until SIGINT/SIGTERM; return the exit code."""
    # The event loop shares the GIL with the worker thread that parses and renders heavy
    # answers; each time the loop wakes it waits up to one switch interval for the GIL. 1 ms
    # instead of Python's 5 ms keeps /health and the dashboard's small requests quick while a
    # heavy request runs (bench/api_cost.py).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        lifespan="on",
        log_config=None,  # the meltemi entry point configures logging
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        timeout_keep_alive=KEEP_ALIVE_S,
        server_header=False,
        proxy_headers=False,  # X-Forwarded-For is read by api.client_address, trusted proxies only
    )
    server = _Server(config)
    logger.info("serving the API on http://%s:%d", settings.api_host, settings.api_port)
    server.run()
    return 0 if server.started else 1
