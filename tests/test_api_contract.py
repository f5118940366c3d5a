"""The API says what is wrong, on time (issue 8, points 6, 7, 10, 11): Idempotency-Key, strict validation,
query parameters, slow request bodies, 405 with Allow, /docs offline, recordings as MP3. Real server on
loopback, real SQLite, raw sockets where a client must misbehave."""

from __future__ import annotations

import re
import secrets
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import soundfile as sf

from ivrsim.api.server import BackgroundServer
from ivrsim.settings import Settings
from ivrsim.testing.waiting import wait_until

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
GOOD: dict[str, Any] = {"to": "+15551234567", "from": "+15559876543", "tts": {"text": "Hello"}}
FINAL = ("completed", "busy", "no-answer", "failed")
#: The test server's deadline for a whole request body, in seconds.
BODY_TIMEOUT_S = 1.0


def settings_for(folder: Path, **overrides: Any) -> Settings:
    return Settings(**{"api_key": KEY, "port": 0, "data_dir": folder, "body_timeout_s": BODY_TIMEOUT_S, **overrides})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    with BackgroundServer(settings_for(tmp_path_factory.mktemp("contract"))) as running:
        yield running


@pytest.fixture
def client(server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        yield http


def unique_number() -> str:
    """A recipient no other test uses, so calls can be counted by number."""
    return "+1555" + "".join(secrets.choice("0123456789") for _ in range(7))


def calls_to(client: httpx.Client, number: str) -> list[dict[str, Any]]:
    found, after = [], None
    while True:
        page = client.get("/v1/voice/calls", params={"limit": 200, **({"starting_after": after} if after else {})}).json()
        found += [c for c in page["data"] if c["to"] == number]
        if not page["has_more"]:
            return found
        after = page["next_starting_after"]


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"code", "message", "param"}
    return error


# -- strict validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "param", "fragment"),
    [
        ({"to": "+15551234567\n"}, "to", "E.164"),
        ({"from": "+15559876543\n"}, "from", "E.164"),
        ({"timeout": True}, "timeout", "must be an integer"),
        ({"timeout": "30"}, "timeout", "not a string"),
        ({"timeout": 30.5}, "timeout", "must be a whole number of seconds"),
        ({"max_duration": 60.5}, "max_duration", "must be a whole number of seconds"),
        ({"gather": {"num_digits": 2.5}}, "gather.num_digits", "must be a whole number"),
        ({"record": "yes"}, "record", "true or false"),
        ({"record": 1}, "record", "true or false"),
        ({"tts": {"text": "  \n\t "}}, "tts.text", "blank"),
        ({"tts": {"text": ""}}, "tts.text", "at least 1 character"),
        ({"tts": {"text": "Hi", "speed": "1.5"}}, "tts.speed", "must be a number"),
        ({"webhook_url": "http://[::1/x"}, "webhook_url", "does not parse"),
        ({"webhook_url": "https://example.com/" + "a" * 2100}, "webhook_url", "2048"),
        ({"webhook_url": "http://exa mple.com/"}, "webhook_url", "http:// or https://"),
        ({"gather": {"webhook_url": "http://[::1/x"}}, "gather.webhook_url", "does not parse"),
        ({"gather": {"type": "voice"}}, "gather.type", "'dtmf', 'speech' or 'dtmf speech'"),
        ({"gather": {"type": "speech", "hints": []}}, "gather.hints", "at least 1 item"),
        ({"gather": {"type": "speech", "hints": ["billing", " "]}}, "gather.hints", "blank"),
        ({"gather": {"type": "speech", "speech_timeout": 30}}, "gather.speech_timeout", "0.1 to 10"),
        ({"gather": {"type": "speech", "speech_timeout": "1"}}, "gather.speech_timeout", "auto"),
        ({"language": "english"}, "language", "language tag"),
        ({"machine_detection": "yes"}, "machine_detection", "true or false"),
        ({"machine_detection_timeout": 0.5}, "machine_detection_timeout", "greater than or equal to 1"),
        ({"gather": {"num_digits": "4"}}, "gather.num_digits", "must be an integer"),
        ({"audio_url": "http://[::1/x"}, "audio_url", "does not parse"),
        ({"colour": "blue"}, "colour", "not a parameter"),
    ],
)
def test_bad_fields_are_422_naming_the_field(client: httpx.Client, change: dict[str, Any], param: str, fragment: str) -> None:
    error = error_of(client.post("/v1/voice/calls", json={**GOOD, **change}), 422)
    assert error["param"] == param
    assert fragment in error["message"]
    assert error["message"].startswith(param)


def test_whole_numbers_may_be_written_with_a_point(client: httpx.Client) -> None:
    """JSON (and JSON Schema) read 30.0 as the integer 30; strict types still refuse "30" and true."""
    number = unique_number()
    response = client.post("/v1/voice/calls", json={**GOOD, "to": number, "timeout": 30.0, "gather": {"num_digits": 4.0, "timeout": 3}})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_numbers_are_refused(client: httpx.Client, literal: bytes) -> None:
    """Python's json reads NaN and Infinity; the API does not take them as numbers."""
    body = b'{"to": "+15551234567", "from": "+15559876543", "tts": {"text": "Hi", "speed": ' + literal + b"}}"
    error = error_of(client.post("/v1/voice/calls", content=body, headers={"Content-Type": "application/json"}), 422)
    assert error["param"] == "tts.speed"
    assert "must be a finite number" in error["message"]


def test_an_empty_body_says_which_fields_are_required(client: httpx.Client) -> None:
    error = error_of(client.post("/v1/voice/calls", headers={"Content-Type": "application/json"}), 422)
    assert error["code"] == "missing_parameter" and error["param"] is None
    assert "None" not in error["message"]
    assert "to, from and either tts or audio_url" in error["message"]
    empty_object = error_of(client.post("/v1/voice/calls", json={}), 422)
    assert "to and from are required" in empty_object["message"]


def test_a_body_that_is_not_an_object(client: httpx.Client) -> None:
    error = error_of(client.post("/v1/voice/calls", json=["to"]), 422)
    assert "the body must be an object" in error["message"]


# -- query parameters ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/_sim/events", {"limit": "-1"}, "limit"),
        ("/_sim/events", {"limit": "5000"}, "limit"),
        ("/_sim/events", {"limit": "ten"}, "limit"),
        ("/v1/voice/calls", {"limit": "0"}, "limit"),
        ("/v1/voice/calls", {"status": "ended"}, "status"),
        ("/v1/voice/voices", {"language": "fr fr"}, "language"),
    ],
)
def test_bad_query_parameters_are_422_naming_them(client: httpx.Client, path: str, params: dict[str, str], param: str) -> None:
    error = error_of(client.get(path, params=params), 422)
    assert error["param"] == param and error["message"].startswith(param)


def test_unknown_starting_after_names_itself(client: httpx.Client) -> None:
    error = error_of(client.get("/v1/voice/calls", params={"starting_after": "call_nope"}), 404)
    assert error["param"] == "starting_after"


def test_journal_limit_is_honoured(client: httpx.Client) -> None:
    client.post("/v1/voice/calls", json={**GOOD, "to": unique_number()})
    wait_until(lambda: len(client.get("/_sim/events", params={"limit": 2}).json()["data"]) == 2)


def test_voices_filter_by_language_as_the_cli_does(client: httpx.Client) -> None:
    everything = client.get("/v1/voice/voices").json()["data"]
    french = client.get("/v1/voice/voices", params={"language": "fr"}).json()["data"]
    assert french and all(v["language"].lower().startswith("fr") for v in french)
    assert [v for v in everything if v["language"].lower().startswith("fr")] == french
    assert client.get("/v1/voice/voices", params={"language": "FR-fr"}).json()["data"] == [
        v for v in french if v["language"].lower().startswith("fr-fr")
    ]


# -- methods --------------------------------------------------------------------------------------------------


def test_405_names_every_method_of_the_path(client: httpx.Client) -> None:
    response = client.delete("/_sim/clock")
    error = error_of(response, 405)
    assert error["code"] == "method_not_allowed"
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert {"GET", "POST"} <= allowed and "DELETE" not in allowed
    assert "GET" in error["message"] and "POST" in error["message"]


# -- Idempotency-Key ----------------------------------------------------------------------------------------


def test_same_key_same_body_returns_the_first_call(client: httpx.Client) -> None:
    key = str(uuid.uuid4())
    number = unique_number()
    body = {**GOOD, "to": number}
    first = client.post("/v1/voice/calls", json=body, headers={"Idempotency-Key": key})
    again = client.post("/v1/voice/calls", json=dict(reversed(list(body.items()))), headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert [c["id"] for c in calls_to(client, number)] == [first.json()["id"]]


def test_same_key_other_body_is_409_naming_the_header(client: httpx.Client) -> None:
    key = str(uuid.uuid4())
    assert client.post("/v1/voice/calls", json={**GOOD, "to": unique_number()}, headers={"Idempotency-Key": key}).status_code == 200
    error = error_of(client.post("/v1/voice/calls", json={**GOOD, "to": unique_number()}, headers={"Idempotency-Key": key}), 409)
    assert (error["code"], error["param"]) == ("idempotency_key_reused", "Idempotency-Key")
    assert "Idempotency-Key" in error["message"] and "new key" in error["message"]


def test_a_refused_request_does_not_use_up_its_key(client: httpx.Client) -> None:
    key = str(uuid.uuid4())
    number = unique_number()
    refused = client.post("/v1/voice/calls", json={**GOOD, "to": number, "from": "+15550000000"}, headers={"Idempotency-Key": key})
    assert error_of(refused, 422)["code"] == "unverified_number"
    accepted = client.post("/v1/voice/calls", json={**GOOD, "to": number}, headers={"Idempotency-Key": key})
    assert accepted.status_code == 200 and "idempotent-replayed" not in accepted.headers


def test_without_a_key_every_post_places_a_call(client: httpx.Client) -> None:
    number = unique_number()
    ids = {client.post("/v1/voice/calls", json={**GOOD, "to": number}).json()["id"] for _ in range(2)}
    assert len(ids) == 2


@pytest.mark.parametrize("key", ["has space", "x" * 256])
def test_unusable_keys_are_422(client: httpx.Client, key: str) -> None:
    error = error_of(client.post("/v1/voice/calls", json=GOOD, headers={"Idempotency-Key": key}), 422)
    assert error["param"] == "Idempotency-Key"


def test_keys_survive_a_restart_and_expire(tmp_path: Path) -> None:
    key, number = str(uuid.uuid4()), unique_number()
    body = {**GOOD, "to": number}
    with BackgroundServer(settings_for(tmp_path)) as first:
        placed = httpx.post(f"{first.base_url}/v1/voice/calls", json=body, headers={**AUTH, "Idempotency-Key": key}).json()
    with BackgroundServer(settings_for(tmp_path)) as second:
        replay = httpx.post(f"{second.base_url}/v1/voice/calls", json=body, headers={**AUTH, "Idempotency-Key": key})
        assert replay.json()["id"] == placed["id"] and replay.headers["idempotent-replayed"] == "true"
    with BackgroundServer(settings_for(tmp_path, idempotency_ttl_s=0.2)) as short:
        # Replays until the key is older than the TTL; then the same request places a new call.
        def fresh() -> bool:
            response = httpx.post(f"{short.base_url}/v1/voice/calls", json=body, headers={**AUTH, "Idempotency-Key": key})
            return response.json()["id"] != placed["id"]

        wait_until(fresh, timeout_s=10)


# -- slow clients ---------------------------------------------------------------------------------------------


def test_a_trickling_body_gets_408_and_the_connection_closes(server: BackgroundServer) -> None:
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=BODY_TIMEOUT_S + 20) as raw:
        raw.sendall(
            b"POST /v1/voice/calls HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\""
        )
        received = b""
        while chunk := raw.recv(65536):  # until the server closes: the socket timeout bounds the wait
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), received
    assert b'"request_timeout"' in body and f"within {BODY_TIMEOUT_S:g} s".encode() in body


@pytest.mark.parametrize("sent", [b"", b"GET /_sim/health HTTP/1.1\r\nHost: x\r\nX-Slow: "])
def test_headers_that_never_finish_lose_the_connection(server: BackgroundServer, sent: bytes) -> None:
    """Nothing, or half a request's headers: the server closes the connection after its deadline."""
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=BODY_TIMEOUT_S + 20) as raw:
        raw.sendall(sent)
        assert raw.recv(65536) == b""  # closed by the server; the socket timeout bounds the wait


def test_kept_alive_connections_serve_more_requests(client: httpx.Client) -> None:
    """The header deadline starts again for each request on a connection, and stops once headers arrive."""
    for _ in range(3):
        assert client.get("/_sim/health").status_code == 200


def test_a_body_sent_whole_is_not_affected(client: httpx.Client) -> None:
    assert client.post("/v1/voice/calls", json={**GOOD, "to": unique_number()}).status_code == 200


# -- docs offline --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_load_from_the_package_not_a_cdn(server: BackgroundServer, page: str) -> None:
    html = httpx.get(server.base_url + page)
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html.text, re.IGNORECASE), html.text
    assets = re.findall(r"""(?:src|href)=["'](/[^"']+)["']""", html.text)
    assert any(a.endswith(".js") for a in assets)
    for asset in assets:
        response = httpx.get(server.base_url + asset)
        assert response.status_code == 200 and len(response.content) > 500, asset


def test_vendored_files_keep_their_licences() -> None:
    static = Path(__file__).parents[1] / "ivrsim" / "api" / "static"
    for folder in ("swagger-ui", "redoc"):
        assert "License" in (static / folder / "LICENSE").read_text() or "LICENSE" in (static / folder / "LICENSE").read_text()


# -- messages a hostile trial found unhelpful (issue 8) -------------------------------------------------------


@pytest.mark.parametrize(("field", "example"), [("audio_url", "prompt.wav"), ("webhook_url", "hooks"), ("gather.webhook_url", "hooks")])
def test_credentials_in_urls_are_refused_by_name(client: httpx.Client, field: str, example: str) -> None:
    url = "http://u:p@127.0.0.1:47001/x"
    body = {**GOOD, "gather": {"webhook_url": url}} if field.startswith("gather.") else {**GOOD, field: url}
    error = error_of(client.post("/v1/voice/calls", json=body), 422)
    assert error["param"] == field
    assert "credentials in URLs are not allowed" in error["message"] and "does not parse" not in error["message"]
    assert f"https://example.com/{example}" in error["message"] and "u:p" not in error["message"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 400_000 + b"]" * 400_000, "nested too deeply"),
        (b'{"to": "+1555\xe9", "from": "secret-value"}', "not UTF-8 text"),
    ],
)
def test_bodies_the_decoder_gives_up_on_are_invalid_json_with_a_reason(client: httpx.Client, body: bytes, reason: str) -> None:
    error = error_of(client.post("/v1/voice/calls", content=body, headers={"Content-Type": "application/json"}), 400)
    assert error["code"] == "invalid_json" and reason in error["message"]
    assert "secret-value" not in error["message"] and "[[" not in error["message"]


@pytest.mark.parametrize("key", [("x" * 256).encode(), "clé".encode(), b"has space"])
def test_unusable_keys_say_what_a_key_may_hold(client: httpx.Client, key: bytes) -> None:
    response = client.post("/v1/voice/calls", json=GOOD, headers=[(b"Idempotency-Key", key)])
    error = error_of(response, 422)
    assert error["param"] == "Idempotency-Key"
    assert "1 to 255 visible ASCII characters" in error["message"] and "pattern" not in error["message"]


def test_an_empty_key_is_refused_not_ignored(client: httpx.Client) -> None:
    number = unique_number()
    error = error_of(client.post("/v1/voice/calls", json={**GOOD, "to": number}, headers={"Idempotency-Key": ""}), 422)
    assert error["param"] == "Idempotency-Key" and error["message"].startswith("Idempotency-Key is empty")
    assert calls_to(client, number) == []


# -- recordings as MP3 --------------------------------------------------------------------------------------


def test_recording_is_served_as_mp3_too(client: httpx.Client, server: BackgroundServer) -> None:
    call = client.post("/v1/voice/calls", json={**GOOD, "to": "+15550100001", "tts": {"text": "Recorded for quality."}, "record": True}).json()
    wait_until(lambda: client.get(f"/v1/voice/calls/{call['id']}").json()["status"] in FINAL)
    recording = client.get(f"/v1/voice/calls/{call['id']}/recording").json()
    wav = httpx.get(recording["url"])
    mp3_url = recording["url"].removesuffix(".wav") + ".mp3"
    mp3 = httpx.get(mp3_url)
    assert mp3.status_code == 200 and mp3.headers["content-type"] == "audio/mpeg"
    assert mp3.content[:3] == b"ID3" or mp3.content[0] == 0xFF
    folder = Path(server.settings.data_dir)
    (path,) = [p for p in folder.rglob(f"{recording['id']}.mp3")]
    with sf.SoundFile(path) as decoded, sf.SoundFile(folder.rglob(f"{recording['id']}.wav").__next__()) as original:
        assert decoded.channels == original.channels == 2
        assert abs(decoded.frames / decoded.samplerate - original.frames / original.samplerate) < 0.2
    made_ns = path.stat().st_mtime_ns
    assert httpx.get(mp3_url).content == mp3.content
    assert path.stat().st_mtime_ns == made_ns  # the cached file, not a new conversion
    assert wav.headers["content-type"] == "audio/wav"
    assert httpx.get(mp3_url.replace(recording["id"], "rec_nope")).status_code == 404
