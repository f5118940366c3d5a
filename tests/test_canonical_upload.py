"""The Canonical multipart upload, driven over real HTTP the way pipecat's CanonicalMetricsService drives it:
uploadRequest, one PUT per pre-signed URL (bytes, ``Content-Type: application/octet-stream`` as aiohttp
sends them), uploadComplete with each part's ETag header sent back verbatim; then the analysis runs.
And every way it can go wrong: parts out of order, a missing part, a wrong ETag, an expired or tampered
URL, a part over the cap, disk over the cap, an unknown slug, content that is not audio."""

from __future__ import annotations

import asyncio
import hashlib
import io
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest
import soundfile

from ivrsim.analysis.uploads import UploadLimits, UploadSigner, UploadStore
from ivrsim.api.server import BackgroundServer
from ivrsim.settings import Settings
from ivrsim.testing.waiting import wait_until

KEY = "test-key"
HEADERS = {"X-Canonical-Api-Key": KEY}
#: The module server's caps: small, so the tests that cross them send little.
PART_MAX_BYTES = 2 * 1024 * 1024
PENDING_MAX_BYTES = 5 * 1024 * 1024
#: What aiohttp sends with ``data=bytes`` (pipecat's PUT).
OCTETS = {"Content-Type": "application/octet-stream"}


def settings_for(folder: Path, **overrides: Any) -> Settings:
    return Settings(**{"api_key": KEY, "port": 0, "data_dir": folder, "workers": 0,
                       "upload_part_max_bytes": PART_MAX_BYTES, "upload_pending_max_bytes": PENDING_MAX_BYTES, **overrides})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    with BackgroundServer(settings_for(tmp_path_factory.mktemp("uploads"))) as running:
        yield running


@pytest.fixture
def http(server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.base_url}/api/v1", headers=HEADERS, timeout=30) as client:
        yield client


def call_recording() -> bytes:
    """A 5 s stereo WAV at 8 kHz: the assistant (left) talks, the user (right) answers, the assistant again."""
    rate = 8000
    t = np.arange(5 * rate) / rate
    left = np.where((t > 0.3) & (t < 1.3) | (t > 3.0) & (t < 4.0), 0.3 * np.sin(2 * np.pi * 440 * t), 0.0)
    right = np.where((t > 1.8) & (t < 2.6), 0.3 * np.sin(2 * np.pi * 660 * t), 0.0)
    buffer = io.BytesIO()
    soundfile.write(buffer, np.stack([left, right], axis=1).astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def split(data: bytes, parts: int) -> list[bytes]:
    size = -(-len(data) // parts)
    return [data[i : i + size] for i in range(0, len(data), size)]


def request_upload(http: httpx.Client, call_id: str, parts: int, speaks_first: bool = True) -> dict[str, Any]:
    response = http.post("/recording/uploadRequest", json={"filename": "20261202_101500-call.wav", "parts": parts, "callId": call_id,
                                                           "assistant": {"id": "bot-upload", "speaksFirst": speaks_first}})
    assert response.status_code == 200, response.text
    return response.json()


def put(url: str, data: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    """A PUT to a pre-signed URL: no API key, as pipecat's (the signature is the key)."""
    return httpx.put(url, content=data, headers=OCTETS if headers is None else headers, timeout=30)


def complete(http: httpx.Client, call_id: str, slug: str, parts: list[dict[str, Any]]) -> httpx.Response:
    return http.post("/recording/uploadComplete", json={"filename": "20261202_101500-call.wav", "parts": parts, "slug": slug,
                                                        "callId": call_id, "assistant": {"id": "bot-upload", "speaksFirst": True}})


def upload_parts(http: httpx.Client, call_id: str, chunks: list[bytes]) -> tuple[str, list[dict[str, Any]]]:
    """uploadRequest and a PUT per part, in order; the slug and the parts as pipecat lists them."""
    opened = request_upload(http, call_id, len(chunks))
    parts = []
    for number, (url, chunk) in enumerate(zip(opened["urls"], chunks, strict=True), start=1):
        stored = put(url, chunk)
        assert stored.status_code == 200, stored.text
        parts.append({"partnum": str(number), "etag": stored.headers["ETag"]})
    return opened["slug"], parts


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["statusCode"] == response.status_code and isinstance(body["error"], str), body
    return body


def test_pipecat_upload_out_of_order_is_stored_whole_and_analysed(server: BackgroundServer, http: httpx.Client) -> None:
    recording = call_recording()
    chunks = split(recording, 3)
    opened = request_upload(http, "call-upload-e2e", 3)
    assert len(opened["urls"]) == 3 and all(url.startswith(server.base_url + "/api/v1/recording/parts/") for url in opened["urls"])
    etags = {}
    for number in (3, 1, 2):  # parts arrive in any order
        stored = put(opened["urls"][number - 1], chunks[number - 1])
        assert stored.status_code == 200, stored.text
        etags[number] = stored.headers["ETag"]
        assert etags[number] == f'"{hashlib.md5(chunks[number - 1]).hexdigest()}"'  # quoted MD5 hex, as S3
    listed = [{"partnum": str(n), "etag": etags[n]} for n in (2, 3, 1)]

    done = complete(http, "call-upload-e2e", opened["slug"], listed)
    assert done.status_code == 200, done.text
    assert done.json()["callId"] == "call-upload-e2e" and done.json()["alreadyReceived"] is False
    stored_file = server.settings.data_dir / "recordings" / "uploads" / f"{opened['slug']}.wav"
    assert stored_file.read_bytes() == recording

    again = complete(http, "call-upload-e2e", opened["slug"], listed)  # a client that retries
    assert again.status_code == 200 and again.json()["alreadyReceived"] is True

    def finished() -> dict[str, Any] | None:
        call = http.get("/call/call-upload-e2e").json()
        return call if call["status"] in ("completed", "failed") else None

    call = wait_until(finished, timeout_s=90)
    assert call["status"] == "completed", call.get("failureReason")
    assert call["source"] == "upload" and call["assistant"]["id"] == "bot-upload"
    analysis = call["analysis"]
    assert analysis["speakers"]["assistant"]["channel"] == 1 and analysis["speakers"]["user"]["channel"] == 2
    assert analysis["latency_ms"]["num"] >= 1


def test_a_part_larger_than_the_json_body_limit_is_stored_without_a_content_type(http: httpx.Client) -> None:
    big = bytes(range(256)) * (6 * 1024)  # 1.5 MB: over the API's 1 MB JSON body limit, under the part cap
    opened = request_upload(http, "call-upload-big-part", 1)
    stored = put(opened["urls"][0], big, headers={})
    assert stored.status_code == 200, stored.text
    assert stored.headers["ETag"] == f'"{hashlib.md5(big).hexdigest()}"'


def test_a_missing_part_is_named(http: httpx.Client) -> None:
    chunks = split(call_recording(), 3)
    opened = request_upload(http, "call-upload-missing", 3)
    etags = {n: put(opened["urls"][n - 1], chunks[n - 1]).headers["ETag"] for n in (1, 3)}
    listed = [{"partnum": "1", "etag": etags[1]}, {"partnum": "2", "etag": etags[1]}, {"partnum": "3", "etag": etags[3]}]
    refused = complete(http, "call-upload-missing", opened["slug"], listed)
    assert refused.status_code == 400
    body = error_of(refused)
    assert "part 2 was never uploaded" in body["message"] and body["param"] == "parts.1.partnum"


def test_a_complete_that_leaves_out_an_uploaded_part_is_refused(http: httpx.Client) -> None:
    slug, parts = upload_parts(http, "call-upload-subset", split(call_recording(), 3))
    refused = complete(http, "call-upload-subset", slug, [parts[0], parts[2]])  # all three PUT, two listed
    assert refused.status_code == 400
    body = error_of(refused)
    assert "part(s) 2 of 3 missing" in body["message"] and body["param"] == "parts"
    assert complete(http, "call-upload-subset", slug, parts).status_code == 200  # listed whole, it is stored


def test_a_wrong_etag_is_named(http: httpx.Client) -> None:
    slug, parts = upload_parts(http, "call-upload-etag", split(call_recording(), 2))
    right = parts[1]["etag"]
    for wrong in ('"' + "0" * 32 + '"', "not-an-etag"):
        refused = complete(http, "call-upload-etag", slug, [parts[0], {**parts[1], "etag": wrong}])
        assert refused.status_code == 400
        body = error_of(refused)
        assert "etag of part 2 does not match" in body["message"] and body["param"] == "parts.1.etag"
    bare = [{"partnum": p["partnum"], "etag": p["etag"].strip('"')} for p in parts]  # unquoted works too
    assert right.startswith('"') and complete(http, "call-upload-etag", slug, bare).status_code == 200


def test_a_tampered_url_is_403(http: httpx.Client) -> None:
    opened = request_upload(http, "call-upload-tampered", 2)
    url = opened["urls"][0]
    signature = parse_qs(urlsplit(url).query)["signature"][0]
    flipped = url.replace(signature, ("0" if signature[0] != "0" else "1") + signature[1:])
    other_part = url.replace("/parts/" + opened["slug"] + "/1?", "/parts/" + opened["slug"] + "/2?")
    unsigned = url.split("?")[0]
    for bad in (flipped, other_part, unsigned):
        refused = put(bad, b"RIFF" + b"\0" * 100)
        assert refused.status_code == 403, bad
        assert "signature" in error_of(refused)["message"] or "signed" in error_of(refused)["message"]
    for odd in ("x", "\u00b2", "9" * 5000):  # not a part number: no such part, never a 500
        assert put(url.replace(f"/{opened['slug']}/1?", f"/{opened['slug']}/{odd}?"), b"data").status_code == 404
    assert put(url + "9" * 5000, b"data").status_code == 403  # an unusable signature
    assert put(url, b"data").status_code == 200  # the URL as handed out still works


def test_an_expired_url_is_403(tmp_path: Path) -> None:
    with BackgroundServer(settings_for(tmp_path, upload_url_ttl_s=1.0)) as server, \
            httpx.Client(base_url=f"{server.base_url}/api/v1", headers=HEADERS, timeout=30) as http:
        opened = request_upload(http, "call-upload-expired", 1)
        expires = int(parse_qs(urlsplit(opened["urls"][0]).query)["expires"][0])
        wait_until(lambda: time.time() >= expires, timeout_s=5)
        refused = put(opened["urls"][0], b"late")
    assert refused.status_code == 403
    assert "expired" in error_of(refused)["message"]


def test_a_part_over_the_cap_is_413(http: httpx.Client) -> None:
    opened = request_upload(http, "call-upload-cap", 1)
    declared = put(opened["urls"][0], b"\0" * (PART_MAX_BYTES + 1))
    assert declared.status_code == 413 and error_of(declared)["param"] == "part"

    def trickle() -> Iterator[bytes]:  # chunked, no Content-Length: the cap is counted as it streams
        for _ in range(PART_MAX_BYTES // 65536 + 2):
            yield b"\0" * 65536

    streamed = httpx.put(opened["urls"][0], content=trickle(), headers=OCTETS, timeout=30)
    assert streamed.status_code == 413
    assert put(opened["urls"][0], b"fits").status_code == 200


def test_a_trickling_part_gets_408_after_the_part_deadline_and_leaves_nothing(tmp_path: Path) -> None:
    """Parts have their own body deadline (IVRSIM_UPLOAD_PART_TIMEOUT_S), not the JSON bodies' one."""
    with BackgroundServer(settings_for(tmp_path, upload_part_timeout_s=1.0, body_timeout_s=30.0)) as server, \
            httpx.Client(base_url=f"{server.base_url}/api/v1", headers=HEADERS, timeout=30) as http:
        url = urlsplit(request_upload(http, "call-upload-trickle", 1)["urls"][0])
        with socket.create_connection((url.hostname, url.port), timeout=20) as raw:
            raw.sendall(f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".encode() + b"\0" * 1000)
            received = b""
            while chunk := raw.recv(65536):  # until the server closes: the socket timeout bounds the wait
                received += chunk
        assert received.startswith(b"HTTP/1.1 408") and b"within 1 s" in received, received
        wait_until(lambda: not list((tmp_path / "upload-parts").glob("*/.*.tmp")), timeout_s=10)


def test_pending_uploads_have_a_disk_cap(tmp_path: Path) -> None:
    with BackgroundServer(settings_for(tmp_path, upload_pending_max_bytes=300_000)) as server, \
            httpx.Client(base_url=f"{server.base_url}/api/v1", headers=HEADERS, timeout=30) as http:
        first = request_upload(http, "call-upload-disk-1", 1)
        second = request_upload(http, "call-upload-disk-2", 1)
        assert put(first["urls"][0], b"\1" * 200_000).status_code == 200
        refused = put(second["urls"][0], b"\2" * 200_000)
        assert refused.status_code == 507 and "complete or let expire" in error_of(refused)["message"]
        # A part sent again replaces the first one once it has landed (both count while it streams in)...
        assert put(first["urls"][0], b"\3" * 90_000).status_code == 200
        assert put(second["urls"][0], b"\4" * 200_000).status_code == 200  # ...and then the first's bytes are free
        assert put(second["urls"][0], b"\5" * 20_000).status_code == 507  # 290,000 held + 20,000 streaming
        leftovers = list((tmp_path / "upload-parts").glob("*/.*.tmp"))
    assert leftovers == []


def test_unknown_slugs_are_404(server: BackgroundServer, http: httpx.Client) -> None:
    missing = complete(http, "call-upload-unknown", "f" * 32, [{"partnum": "1", "etag": '"' + "0" * 32 + '"'}])
    assert missing.status_code == 404 and error_of(missing)["param"] == "slug"
    assert complete(http, "call-upload-unknown", "../../etc", [{"partnum": "1", "etag": "x"}]).status_code == 404
    # A PUT signed with this server's secret for a slug it never handed out: the signature holds, the slug does not.
    signer = UploadSigner.for_folder(server.settings.data_dir)
    expires = int(time.time()) + 60
    url = f"{server.base_url}/api/v1/recording/parts/{'e' * 32}/1?expires={expires}&signature={signer.sign('e' * 32, 1, expires)}"
    assert put(url, b"data").status_code == 404


def test_content_that_is_not_audio_is_refused_without_echoing_it(http: httpx.Client) -> None:
    secret = b"CONFIDENTIAL-NOT-AUDIO-" * 200
    slug, parts = upload_parts(http, "call-upload-junk", [secret])
    refused = complete(http, "call-upload-junk", slug, parts)
    assert refused.status_code == 422
    assert "not audio" in error_of(refused)["message"] and "CONFIDENTIAL" not in refused.text
    assert http.get("/call/call-upload-junk").status_code == 404  # nothing was queued


def test_the_call_id_must_be_the_one_of_the_request(http: httpx.Client) -> None:
    slug, parts = upload_parts(http, "call-upload-mine", split(call_recording(), 1))
    refused = complete(http, "call-upload-other", slug, parts)
    assert refused.status_code == 409 and error_of(refused)["param"] == "callId"


@pytest.mark.parametrize(("body", "message", "param"), [
    ({"parts": 1, "callId": "c", "assistant": {"id": "a", "speaksFirst": True}}, "body must have required property 'filename'", "filename"),
    ({"filename": "f.wav", "parts": 1, "assistant": {"id": "a", "speaksFirst": True}}, "body must have required property 'callId'", "callId"),
    ({"filename": "f.wav", "parts": 1, "callId": "c", "assistant": {"id": "a"}}, "body/assistant must have required property 'speaksFirst'", "assistant.speaksFirst"),
    ({"filename": "f.wav", "parts": 0, "callId": "c", "assistant": {"id": "a", "speaksFirst": True}}, "body/parts must be >= 1", "parts"),
    ({"filename": "f.wav", "parts": 101, "callId": "c", "assistant": {"id": "a", "speaksFirst": True}}, "body/parts must be <= 100", "parts"),
    ({"filename": "f.wav", "parts": "two", "callId": "c", "assistant": {"id": "a", "speaksFirst": True}}, "body/parts must be integer", "parts"),
])
def test_upload_requests_are_validated_as_the_hosted_service_does(http: httpx.Client, body: dict[str, Any], message: str, param: str) -> None:
    refused = http.post("/recording/uploadRequest", json=body)
    assert refused.status_code == 400
    assert error_of(refused)["message"] == message and refused.json()["param"] == param


def test_upload_requests_need_the_canonical_key(server: BackgroundServer) -> None:
    body = {"filename": "f.wav", "parts": 1, "callId": "c", "assistant": {"id": "a", "speaksFirst": True}}
    assert httpx.post(f"{server.base_url}/api/v1/recording/uploadRequest", json=body).status_code == 401
    assert httpx.post(f"{server.base_url}/api/v1/recording/uploadComplete", json=body, headers={"X-Canonical-Api-Key": "wrong"}).status_code == 401


def test_expired_sessions_are_deleted_with_their_parts(tmp_path: Path) -> None:
    """The store alone, on a clock the test moves: a session past its lifetime goes, with its bytes."""
    now = [1_000_000.0]
    limits = UploadLimits(session_ttl_s=60.0, url_ttl_s=60.0)
    store = UploadStore(tmp_path / "parts", tmp_path / "recordings", UploadSigner(b"k" * 32), limits, clock=lambda: now[0])

    async def scenario() -> tuple[int, int, int]:
        session = store.create("call-1", {"id": "a", "speaksFirst": True}, "f.wav", 1)
        url = store.part_urls(session, "http://x")[0]
        query = parse_qs(urlsplit(url).query)

        async def body() -> Any:
            yield b"\5" * 1000

        await store.store_part(session.slug, 1, query["expires"][0], query["signature"][0], body(), 1000)
        held = store.pending_bytes
        kept = await store.cleanup()
        now[0] += 61.0
        removed = await store.cleanup()
        return held, kept, removed

    held, kept, removed = asyncio.run(scenario())
    assert (held, kept, removed) == (1000, 0, 1)
    assert store.pending_bytes == 0 and list((tmp_path / "parts").iterdir()) == []
