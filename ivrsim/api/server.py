"""Running the app with uvicorn: in the foreground (``ivrsim serve``) or on a background thread (the demo,
the tests and the benchmarks, on a free loopback port)."""

from __future__ import annotations

import copy
import errno
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI

from ivrsim.api.app import create_app
from ivrsim.api.slow_clients import header_deadline_protocol
from ivrsim.settings import Settings
from ivrsim.store.maintenance import DataDirLock
from ivrsim.workers.protocol import MAX_MESSAGE_BYTES, PING_INTERVAL_S, PING_TIMEOUT_S

logger = logging.getLogger(__name__)


class PortInUseError(OSError):
    """The address the server should listen on is taken (or not ours to take)."""


def _url_host(host: str) -> str:
    """The host as a URL should show it: a wildcard address as loopback, IPv6 in brackets."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port`` (port 0: a free one); ``PortInUseError`` when taken."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
    except OSError as error:
        sock.close()
        if error.errno in (errno.EADDRINUSE, errno.EACCES):
            why = "is in use" if error.errno == errno.EADDRINUSE else "needs privileges"
            raise PortInUseError(error.errno, f"port {port} on {host} {why}; pick another with --port (0 picks a free one)") from None
        raise
    sock.set_inheritable(True)
    return sock


def _base_url(host: str, sock: socket.socket) -> str:
    return f"http://{_url_host(host)}:{sock.getsockname()[1]}"


def claim_data_dir(lock: DataDirLock, settings: Settings, sock: socket.socket) -> None:
    """Take the data folder's ``lock`` for a server bound to ``sock``, before uvicorn starts: a folder
    that another server holds is ``DataDirInUse`` raised here, in the caller, as one clean error (and the
    socket is closed), never a traceback from the app's lifespan."""
    try:
        lock.acquire(listen=(settings.public_url or _base_url(settings.host, sock)).rstrip("/"))
    except BaseException:
        sock.close()
        raise


class IvrsimServer(uvicorn.Server):
    """uvicorn's server, binding its socket before the app starts, so the app knows its own address: the
    bound URL goes on ``app.state.bound_url`` (recording URLs in webhooks are built from it, unless
    IVRSIM_PUBLIC_URL says otherwise), and to ``on_bound`` once the server accepts connections."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, on_bound: Callable[[str], None] | None = None) -> None:
        super().__init__(config)
        self.app = app
        self.on_bound = on_bound
        self.base_url = ""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if sockets is None:
            sockets = [bind_socket(self.config.host, self.config.port)]
        self.base_url = _base_url(self.config.host, sockets[0])
        self.app.state.bound_url = self.base_url
        await super().startup(sockets=sockets)
        if self.on_bound is not None and self.started:  # accepting connections now: a script may connect at once
            self.on_bound(self.base_url)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """End the live calls first, while the workers' sessions are still open (uvicorn closes every
        connection before the app's lifespan ends), so that a call cut by a shutdown ends as it would in
        the server's own process."""
        closing = getattr(self.app.state, "closing", None)
        if closing is not None:  # open event streams (the dashboard's) end now; uvicorn waits for every response to finish
            closing.set()
        before = getattr(self.app.state, "before_shutdown", None)
        if before is not None:
            try:
                await before()
            except Exception:
                logger.exception("ending the live calls at shutdown failed")
        await super().shutdown(sockets=sockets)


#: Seconds an idle kept-alive connection stays open (uvicorn's default, stated).
KEEP_ALIVE_S = 5


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, with the access log on stderr too: stdout carries only what `ivrsim serve`
    prints for scripts (the URL)."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    return config


def _config(app: FastAPI, settings: Settings, log_level: str, access_log: bool) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=log_level, lifespan="on", access_log=access_log,
        log_config=_log_config(),
        # Slow clients: idle connections close, headers must arrive in time; bodies: BodyTimeoutMiddleware.
        timeout_keep_alive=KEEP_ALIVE_S,
        http=header_deadline_protocol(settings.body_timeout_s),
        h11_max_incomplete_event_size=64 * 1024,
        # The client is the socket's peer: no proxy stands in front of ivrsim, so X-Forwarded-For from a local
        # client must not change who it is (the dashboard's login throttling counts by address).
        proxy_headers=False,
        # Worker sessions: a worker that stops answering pings is gone within seconds (its calls end failed).
        ws_ping_interval=PING_INTERVAL_S, ws_ping_timeout=PING_TIMEOUT_S, ws_max_size=MAX_MESSAGE_BYTES, ws_per_message_deflate=False,
    )


class BackgroundServer:
    """The app served on ``settings.host`` (port 0 picks a free one) in a thread; a context manager."""

    def __init__(self, settings: Settings, start_timeout_s: float = 20.0) -> None:
        self.settings = settings
        self.start_timeout_s = start_timeout_s
        self._lock = DataDirLock(settings.data_dir)  # taken by __enter__, released by the app's lifespan
        self.app = create_app(settings, data_lock=self._lock)
        self._server = IvrsimServer(_config(self.app, settings, "warning", False), self.app)
        self._error: BaseException | None = None
        self._socket: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, name="ivrsim-server", daemon=True)
        self.base_url = ""

    def _run(self) -> None:
        assert self._socket is not None  # bound by __enter__ before the thread starts
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as error:  # noqa: BLE001 - handed to __enter__, which raises it in the caller
            self._error = error

    def __enter__(self) -> BackgroundServer:
        self._socket = bind_socket(self.settings.host, self.settings.port)  # PortInUseError here, in the caller
        claim_data_dir(self._lock, self.settings, self._socket)  # DataDirInUse here, in the caller
        try:
            self._thread.start()
            deadline = time.monotonic() + self.start_timeout_s
            while not self._server.started:
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    if isinstance(self._error, Exception):
                        raise self._error
                    raise RuntimeError("the ivrsim server did not start; see the log above")
                time.sleep(0.01)
        except BaseException:
            self.__exit__()
            raise
        self.base_url = self._server.base_url
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self._lock.release()  # the lifespan released it already, unless uvicorn never ran it
        if self._socket is not None:
            self._socket.close()


def serve(settings: Settings, access_log: bool = False, on_bound: Callable[[str], None] | None = None) -> None:
    """Serve in the foreground until interrupted; ``access_log`` prints a line per request; ``on_bound``
    hears the real base URL once the socket is bound (``--port 0``). Raises ``PortInUseError`` or
    ``DataDirInUse`` before uvicorn starts."""
    sock = bind_socket(settings.host, settings.port)  # before uvicorn says anything: a taken port is one clean error
    lock = DataDirLock(settings.data_dir)
    claim_data_dir(lock, settings, sock)  # likewise a held data folder (DataDirInUse)
    try:
        app = create_app(settings, data_lock=lock)
        IvrsimServer(_config(app, settings, "info", access_log), app, on_bound).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once it has shut down cleanly (as uvicorn.run, end quietly)
        pass
    finally:
        lock.release()
        sock.close()
