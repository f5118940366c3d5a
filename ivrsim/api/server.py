"""Running the app with uvicorn: in the foreground (``ivrsim serve``) or on a background thread (the demo,
the tests and the benchmarks, on a free loopback port)."""

from __future__ import annotations

import threading
import time

import uvicorn

from ivrsim.api.app import create_app
from ivrsim.settings import Settings


class BackgroundServer:
    """The app served on ``settings.host`` (port 0 picks a free one) in a thread; a context manager."""

    def __init__(self, settings: Settings, start_timeout_s: float = 20.0) -> None:
        self.settings = settings
        self.start_timeout_s = start_timeout_s
        config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port, log_level="warning", lifespan="on", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="ivrsim-server", daemon=True)
        self.base_url = ""

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the ivrsim server did not start; see the log above")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://{self.settings.host}:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


def serve(settings: Settings, access_log: bool = False) -> None:
    """Serve in the foreground until interrupted; ``access_log`` prints a line per request."""
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info", lifespan="on", access_log=access_log)
