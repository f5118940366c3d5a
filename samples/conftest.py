"""Fixtures of the sample test suite (``pytest samples``): the apps the sample flows talk to, served on
loopback for real. The ivrsim fixtures (``ivrsim``: a server on the virtual clock, callers, calls) come from
the ivrsim pytest plugin, installed with ivrsim.

- ``orders_app``: the order lookup that ``support-menu.yaml``'s webhook node asks (the user's app).
- ``support_app``: ``samples/twiml/support_app.py``, the support menu as a TwiML app; ``signed_support_app``
  the same app checking ``X-Twilio-Signature``.
- ``loopback``: serve a test's own ASGI app on loopback.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ivrsim.testing.waiting import wait_until

SAMPLES = Path(__file__).resolve().parent


@contextmanager
def serve_asgi(app: Any, name: str) -> Iterator[str]:
    """``app`` on uvicorn on a free loopback port for as long as the ``with`` lasts; yields its base URL."""
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), timeout_s=20)
        assert server.started, f"{name} did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass
class OrdersApp:
    """The user's order service: ``POST /orders`` with ``{"order": ..., "caller": ...}`` answers the flow's
    webhook node ``{"branch": "shipped" | "pending", "variables": {"eta": ...}}``; ``requests`` keeps the bodies."""

    url: str = ""
    shipped: dict[str, str] = field(default_factory=lambda: {"1001": "tomorrow"})
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def orders(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        self.requests.append(body)
        eta = self.shipped.get(str(body.get("order")))
        if eta is None:
            return JSONResponse({"branch": "pending"})
        return JSONResponse({"branch": "shipped", "variables": {"eta": eta}})


@pytest.fixture
def orders_app() -> Iterator[OrdersApp]:
    app = OrdersApp()
    with serve_asgi(Starlette(routes=[Route("/orders", app.orders, methods=["POST"])]), "orders-app") as base_url:
        app.url = f"{base_url}/orders"
        yield app


def load_sample(path: Path, name: str) -> ModuleType:
    """A sample script (not a package) imported from its file, as a module of its own (once per process:
    it is registered in ``sys.modules``, as an import would, for its dataclasses)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class ServedApp:
    """A TwiML app on loopback: where to point a call's ``url``, and the app (its ``seen`` requests)."""

    voice_url: str
    app: Any


@pytest.fixture
def support_app() -> Iterator[ServedApp]:
    """``samples/twiml/support_app.py`` served on loopback; calls go to ``support_app.voice_url``."""
    module = load_sample(SAMPLES / "twiml" / "support_app.py", "support_app")
    app = module.create_app(auth_token="")  # the plugin's server signs nothing: no token to check against
    with serve_asgi(app, "support-app") as base_url:
        yield ServedApp(f"{base_url}/voice", app.state.support)


#: The auth token ``signed_support_app`` checks signatures with.
SAMPLE_AUTH_TOKEN = "sample-auth-token"


@pytest.fixture
def signed_support_app() -> Iterator[ServedApp]:
    """``support_app`` that checks ``X-Twilio-Signature`` with ``SAMPLE_AUTH_TOKEN`` (the twilio library's validator)."""
    module = load_sample(SAMPLES / "twiml" / "support_app.py", "support_app")
    app = module.create_app(auth_token=SAMPLE_AUTH_TOKEN)
    with serve_asgi(app, "signed-support-app") as base_url:
        yield ServedApp(f"{base_url}/voice", app.state.support)


@pytest.fixture
def loopback() -> Any:
    """``serve_asgi``: a test's own ASGI app on uvicorn on loopback (``with loopback(app, "name") as base_url``)."""
    return serve_asgi
