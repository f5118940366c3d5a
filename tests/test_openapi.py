"""The OpenAPI document describes the real API: schemathesis, with every check, against a real server.

Bounded and seeded (a few examples per operation, one worker, a fixed seed), so it is the same run every
time and stays under a minute; the server sends webhooks and fetches audio only on loopback
(tests/schemathesis_hooks.py points generated URLs at a closed local port).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from ivrsim.api.schemas import HTTP_URL_PATTERN
from ivrsim.api.server import BackgroundServer
from ivrsim.settings import Settings

KEY = "test-key"
#: Examples per operation and phase, and the seed: small and fixed (the suite's time matters).
MAX_EXAMPLES = 10
SEED = 8
#: The whole run may take this long before the test gives up (it takes well under a minute).
RUN_TIMEOUT_S = 300
TESTS_DIR = Path(__file__).parent


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def schemathesis_cli() -> list[str]:
    return [sys.executable, "-m", "schemathesis.cli"]


@pytest.fixture
def server(tmp_path: Path) -> Any:
    settings = Settings(api_key=KEY, port=0, data_dir=tmp_path / "data", webhook_attempts=1, webhook_connect_timeout_s=1.0, webhook_timeout_s=1.0)
    with BackgroundServer(settings) as running:
        yield running


def test_schemathesis_finds_no_failure(server: BackgroundServer, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
        "IVRSIM_TEST_SINK": f"http://127.0.0.1:{closed_port()}/sink",
        "IVRSIM_TEST_URL_PATTERN": HTTP_URL_PATTERN,  # the hooks take it from here: no ivrsim import there
        "NO_COLOR": "1",
    }
    command = [
        *schemathesis_cli(), "run", f"{server.base_url}/openapi.json",
        "--checks", "all",
        "--header", f"Authorization: Bearer {KEY}",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED),
        "--workers", "1",
        "--request-timeout", "30",
        "--no-color",
    ]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-12_000:]
    assert "Tested: " in report and "passed" in report


def test_document_has_the_real_shapes(server: BackgroundServer) -> None:
    """What schemathesis cannot see by fuzzing: the error component, patterns, enums, the SSE type."""
    document = httpx.get(f"{server.base_url}/openapi.json").json()
    text = json.dumps(document)
    assert "HTTPValidationError" not in text and '"detail"' not in text
    schemas = document["components"]["schemas"]
    assert schemas["ErrorResponse"]["properties"]["error"] == {"$ref": "#/components/schemas/ErrorDetail"}
    assert set(schemas["ErrorDetail"]["required"]) == {"code", "message", "param"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):  # /api/v1 answers in the shape of the hosted (Fastify) service
                    shape = "CanonicalErrorResponse" if path.startswith("/api/v1/") else "ErrorResponse"
                    assert response["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{shape}"}, (method, path, status)
    call = schemas["CallCreate"]["properties"]
    assert call["to"]["pattern"] == r"^\+[1-9][0-9]{7,14}$"
    assert call["from"]["enum"] == ["+15559876543"]  # the server's verified numbers
    assert schemas["GatherIn"]["properties"]["type"]["enum"] == ["dtmf", "speech", "dtmf speech"]
    assert schemas["GatherIn"]["properties"]["hints"]["anyOf"][0]["minItems"] == 1
    assert schemas["GatherIn"]["properties"]["finish_on_key"]["pattern"] == "^[0-9*#A-Da-d]?$"
    assert schemas["DtmfInjection"]["properties"]["digits"]["pattern"] == "^[0-9*#A-Da-dwW]+$"
    assert "en-US-Neural2-F" in schemas["TtsIn"]["properties"]["voice"]["enum"]
    status_query = next(p for p in document["paths"]["/v1/voice/calls"]["get"]["parameters"] if p["name"] == "status")
    assert status_query["schema"]["anyOf"][0]["enum"] == schemas["CallPublic"]["properties"]["status"]["enum"]
    stream = document["paths"]["/v1/voice/calls/{call_id}/events/stream"]["get"]["responses"]["200"]["content"]
    assert list(stream) == ["text/event-stream"]
    create = document["paths"]["/v1/voice/calls"]["post"]
    assert {"400", "401", "408", "409", "413", "415", "422"} <= set(create["responses"])
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in create["parameters"])
    assert create["security"] == [{"HTTPBearer": []}]
