"""The ``ivrsim`` command line, run as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ivrsim.audio.dtmf_generator import DtmfToneSpec, generate_dtmf


def ivrsim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ivrsim", *args], capture_output=True, text=True, timeout=120)


def write(path: Path, digits: str, rate_hz: int = 8000) -> Path:
    soundfile.write(path, generate_dtmf(digits, rate_hz), rate_hz, subtype="PCM_16")
    return path


@pytest.mark.parametrize("command", [[], ["dtmf"], ["dtmf", "decode"], ["dtmf", "generate"], ["dtmf", "roundtrip"], ["demo"], ["say"], ["voices"], ["serve"], ["call"],
                                     ["prune"], ["snapshot"], ["snapshot", "save"], ["snapshot", "load"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = ivrsim(*command, "--help")
    assert result.returncode == 0
    assert "Usage:" in result.stdout


def test_top_level_help_documents_the_exit_codes() -> None:
    text = " ".join(ivrsim("--help").stdout.split())
    assert "Exit codes: 0 success; 1 the work ran but failed" in text and "2 usage error" in text and "3 refused, nothing changed" in text


def test_generate_then_decode_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "pin.wav"
    result = ivrsim("dtmf", "generate", "1234#w9", "-o", str(out), "--rate-hz", "16000", "--level-dbm0", "-20", "--twist-db", "3")
    assert result.returncode == 0, result.stderr
    info = soundfile.info(out)
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    decoded = ivrsim("dtmf", "decode", str(out))
    assert decoded.returncode == 0
    assert decoded.stdout == f"{out}\t1234#9\n"


def test_decode_json_has_times_levels_and_twist(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    soundfile.write(path, generate_dtmf("5", 8000, DtmfToneSpec(on_ms=100, level_dbm0=-9, twist_db=2)), 8000)
    result = ivrsim("dtmf", "decode", "--json", str(path))
    document = json.loads(result.stdout)
    assert document["digits"] == "5"
    event = document["events"][0]
    assert event["key"] == "5"
    assert event["duration_ms"] == pytest.approx(100, abs=2.5)
    assert event["row_level_dbm0"] == pytest.approx(-9, abs=0.3)
    assert event["twist_db"] == pytest.approx(2, abs=0.3)


def test_stereo_files_are_decoded_per_channel(tmp_path: Path) -> None:
    left = generate_dtmf("12", 8000)
    right = generate_dtmf("#90", 8000)
    length = max(len(left), len(right))
    stereo = np.zeros((length, 2), dtype=np.float32)
    stereo[: len(left), 0] = left
    stereo[: len(right), 1] = right
    path = tmp_path / "call.wav"
    soundfile.write(path, stereo, 8000)
    result = ivrsim("dtmf", "decode", str(path))
    assert result.stdout.splitlines() == [f"{path}:ch1\t12", f"{path}:ch2\t#90"]


@pytest.mark.parametrize("rate_hz", [6000, 11025, 22050, 32000, 96000, 192000])
def test_any_sample_rate_is_accepted(tmp_path: Path, rate_hz: int) -> None:
    path = write(tmp_path / f"r{rate_hz}.wav", "*07D", rate_hz)
    result = ivrsim("dtmf", "decode", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\t")[1].strip() == "*07D"


@pytest.mark.parametrize("extension", ["flac", "ogg", "mp3"])
def test_compressed_formats_decode(tmp_path: Path, extension: str) -> None:
    path = tmp_path / f"keys.{extension}"
    result = ivrsim("dtmf", "generate", "159", "-o", str(path), "--rate-hz", "16000")
    assert result.returncode == 0, result.stderr
    assert ivrsim("dtmf", "decode", str(path)).stdout.endswith("\t159\n")


def test_bad_files_are_named_and_the_others_still_decoded(tmp_path: Path) -> None:
    good = write(tmp_path / "good.wav", "42")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(good.read_bytes()[:12] + b"\x00" * 40)  # RIFF header, then garbage
    missing = tmp_path / "missing.wav"
    result = ivrsim("dtmf", "decode", str(text), str(empty), str(good), str(corrupt), str(missing), str(tmp_path))
    assert result.returncode == 1
    assert result.stdout == f"{good}\t42\n"
    errors = result.stderr.splitlines()
    assert len(errors) == 5
    assert f"{text}: not a readable audio file" in errors[0]
    assert f"{empty}: is empty" in errors[1]
    assert f"{corrupt}: not a readable audio file" in errors[2]
    assert f"{missing}: no such file" in errors[3]
    assert f"{tmp_path}: is a directory" in errors[4]


def test_silent_file_decodes_to_no_digits(tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    soundfile.write(path, np.zeros(8000, dtype=np.float32), 8000)
    result = ivrsim("dtmf", "decode", str(path))
    assert (result.returncode, result.stdout) == (0, f"{path}\t\n")


def test_generate_refuses_a_bad_digit_and_names_it(tmp_path: Path) -> None:
    result = ivrsim("dtmf", "generate", "12x", "-o", str(tmp_path / "x.wav"))
    assert result.returncode == 2
    assert "character 3 of '12x' is 'x'" in result.stderr
    assert not (tmp_path / "x.wav").exists()


def test_generate_refuses_an_unknown_format(tmp_path: Path) -> None:
    result = ivrsim("dtmf", "generate", "1", "-o", str(tmp_path / "x.xyz"))
    assert result.returncode == 1
    assert "unknown audio format 'xyz'" in result.stderr


def test_generate_refuses_out_of_range_options(tmp_path: Path) -> None:
    result = ivrsim("dtmf", "generate", "1", "-o", str(tmp_path / "x.wav"), "--rate-hz", "100")
    assert result.returncode == 2
    assert "--rate-hz" in result.stderr


def test_dtmf_round_trip_succeeds_and_reports_json() -> None:
    result = ivrsim("dtmf", "roundtrip", "--json", "--digits", "0800#", "--law", "alaw", "--snr-db", "15")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["sent"], document["decoded"], document["ok"]) == ("0800#", "0800#", True)
    assert [e["key"] for e in document["events"]] == list("0800#")
    assert all(e["reported_at_s"] > e["end_s"] for e in document["events"])


def test_dtmf_round_trip_table_output() -> None:
    result = ivrsim("dtmf", "roundtrip")
    assert result.returncode == 0
    assert "all digits back" in result.stdout


def test_demo_places_the_documented_call_over_http_with_webhooks(tmp_path: Path) -> None:
    result = ivrsim("demo", "--data-dir", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["ok"] is True and document["call"]["status"] == "completed"
    types = [e["type"] for e in document["events"]]
    assert types[:3] == ["call.queued", "call.ringing", "call.in-progress"] and types[-1] == "call.completed"
    gathered = next(e for e in document["events"] if e["type"] == "gather.completed")
    assert (gathered["call_id"], gathered["digits"]) == (document["call"]["id"], "1")
    assert [w["type"] for w in document["webhooks"]] == [
        "call.queued", "call.ringing", "call.in-progress", "gather.completed", "recording.completed", "call.completed"]
    assert document["recording"]["call_id"] == document["call"]["id"]
    assert soundfile.info(document["recording_file"]).channels == 2


def test_demo_table_names_the_recording(tmp_path: Path) -> None:
    result = ivrsim("demo", "--data-dir", str(tmp_path))
    assert result.returncode == 0
    assert "gather.completed" in result.stdout and "recording:" in result.stdout and "6 with a valid signature" in result.stdout


def test_demo_exits_1_when_the_call_does_not_complete(tmp_path: Path) -> None:
    result = ivrsim("demo", "--data-dir", str(tmp_path), "--to", "+15550100486", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["call"]["status"] == "busy"


def test_demo_refuses_a_bad_phonebook(tmp_path: Path) -> None:
    book = tmp_path / "book.yaml"
    book.write_text("numbers: [1, 2]\n")
    result = ivrsim("demo", "--data-dir", str(tmp_path), "--phonebook", str(book))
    assert result.returncode == 1
    assert "phonebook" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_say_writes_speech_and_reports_json(tmp_path: Path) -> None:
    out = tmp_path / "hello.wav"
    result = ivrsim("say", "Press <say-as interpret-as='digits'>12</say-as> <foo>now</foo>", "-o", str(out), "--voice", "fr-FR-Neural2-A", "--rate-hz", "16000", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["voice"], document["espeak"], document["rate_hz"]) == ("fr-FR-Neural2-A", "fr+f3", 16000)
    assert "unsupported SSML element <foo>" in result.stderr
    info = soundfile.info(out)
    assert info.samplerate == 16000 and info.frames / 16000 == pytest.approx(document["duration_s"], abs=0.001)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["hi", "--voice", "en-US-Neural2-X"], "did you mean 'en-US-Neural2-"),
        (["<speak>hi <break time='soon'/></speak>"], "line 1, column 24"),
        (["hi", "--speed", "9"], "speed: must be between 0.25 and 4.0"),
        (["hi", "--pitch", "-30"], "pitch: must be between -20 and 20 semitones"),
    ],
)
def test_say_errors_name_the_problem(tmp_path: Path, args: list[str], message: str) -> None:
    result = ivrsim("say", *args, "-o", str(tmp_path / "x.wav"))
    assert result.returncode == 2  # what was typed is wrong: a usage error
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_voices_lists_the_catalog() -> None:
    result = ivrsim("voices", "--json")
    voices = json.loads(result.stdout)
    ids = {v["id"] for v in voices}
    assert {"en-US-Neural2-F", "en-US-Neural2-D", "en-GB-Neural2-A", "es-ES-Neural2-A", "fr-FR-Neural2-A"} <= ids
    assert len({v["language"] for v in voices}) >= 40
    table = ivrsim("voices", "--language", "fr")
    assert "fr-FR-Neural2-A" in table.stdout and "en-US" not in table.stdout


def test_serve_and_call_as_real_processes(tmp_path: Path) -> None:
    import os
    import socket
    import time as clock

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "IVRSIM_API_KEY": "cli-key"}
    server = subprocess.Popen([sys.executable, "-m", "ivrsim", "serve", "--port", str(port), "--data-dir", str(tmp_path)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = clock.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if clock.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError("ivrsim serve did not start") from None
                clock.sleep(0.1)
        result = subprocess.run(
            [sys.executable, "-m", "ivrsim", "call", "--to", "+15550100001", "--tts", "Enter your PIN.", "--gather-digits", "4",
             "--base-url", f"http://127.0.0.1:{port}", "--json"],
            env=env, capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        events = [json.loads(line) for line in result.stdout.splitlines()]
        assert next(e for e in events if e["type"] == "gather.completed")["digits"] == "1234"
        assert events[-1]["type"] == "call.completed"
        usage = subprocess.run([sys.executable, "-m", "ivrsim", "call", "--to", "12", "--tts", "x", "--base-url", f"http://127.0.0.1:{port}"],
                               env=env, capture_output=True, text=True, timeout=60)
        assert usage.returncode == 2 and "is not an E.164 number" in usage.stderr  # the API's rule, checked before sending
        refused = subprocess.run([sys.executable, "-m", "ivrsim", "call", "--to", "+15550100001", "--from", "+15550000000", "--tts", "x",
                                  "--base-url", f"http://127.0.0.1:{port}"], env=env, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and "unverified_number" in refused.stderr and "(param: from)" in refused.stderr  # a 422: input
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[1]
    assert "API key: cli-key" in output


def test_call_without_a_server_says_how_to_start_one() -> None:
    result = ivrsim("call", "--to", "+15550100001", "--tts", "hi", "--api-key", "k", "--base-url", "http://127.0.0.1:9")
    assert result.returncode == 1 and "ivrsim serve" in result.stderr


# -- newcomer papercuts (issue 8, point 11) ------------------------------------------------------------------


def test_generate_refuses_no_keys(tmp_path: Path) -> None:
    for digits in ("", "ww"):
        result = ivrsim("dtmf", "generate", digits, "-o", str(tmp_path / "x.wav"))
        assert result.returncode == 2
        assert "has no keys to sound" in result.stderr
    assert not (tmp_path / "x.wav").exists()


def test_generate_refuses_settings_that_clip_and_says_how_much(tmp_path: Path) -> None:
    result = ivrsim("dtmf", "generate", "1", "-o", str(tmp_path / "x.wav"), "--level-dbm0", "3", "--twist-db", "-5")
    assert result.returncode == 2
    assert "clips: 54.1% of the tone samples exceed full scale; use --level-dbm0 -5.8 or lower" in result.stderr
    assert not (tmp_path / "x.wav").exists()
    highest = ivrsim("dtmf", "generate", "1", "-o", str(tmp_path / "y.wav"), "--level-dbm0", "-5.8", "--twist-db", "-5")
    assert highest.returncode == 0, highest.stderr
    assert float(np.abs(soundfile.read(tmp_path / "y.wav")[0]).max()) <= 1.0


def test_serve_refuses_a_bad_phonebook_in_one_line(tmp_path: Path) -> None:
    book = tmp_path / "bad.yaml"
    book.write_text("numbers: [1, 2]\n")
    result = ivrsim("serve", "--data-dir", str(tmp_path / "data"), "--port", "0", "--phonebook", str(book))
    assert result.returncode == 1
    assert result.stderr.startswith(f"ivrsim: error: phonebook {book}") and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("say: {text: hello, voice: en-US-Neural2-X}", "step 2: say.voice: unknown voice 'en-US-Neural2-X'; did you mean"),
        ("play: {file: missing.wav}", "step 2: play.file 'missing.wav': no such file"),
        ("play: {file: notes.wav}", "step 2: play.file: "),
    ],
)
def test_a_bad_caller_script_fails_when_the_phonebook_loads(tmp_path: Path, step: str, message: str) -> None:
    (tmp_path / "notes.wav").write_text("this is not audio\n")
    (tmp_path / "caller.yaml").write_text(f"name: broken\nsteps:\n  - wait_for_prompt: {{}}\n  - {step}\n")
    book = tmp_path / "book.yaml"
    book.write_text("numbers:\n  '+15550100001': {kind: scripted, script: caller.yaml}\n")
    for command in (["serve", "--port", "0"], ["demo"]):
        result = ivrsim(*command, "--data-dir", str(tmp_path / "data"), "--phonebook", str(book))
        assert result.returncode == 1
        line = result.stderr.strip()
        assert len(line.splitlines()) == 1 and "Traceback" not in line
        assert f"phonebook {book}: +15550100001: caller script {tmp_path / 'caller.yaml'}: {message}" in line


@pytest.mark.parametrize("args", [["--verified-number", "12345"], ["--verified-number", "+15551234567\n"]])
def test_serve_refuses_a_verified_number_that_is_not_e164(tmp_path: Path, args: list[str]) -> None:
    result = ivrsim("serve", "--data-dir", str(tmp_path), *args)
    assert result.returncode == 2
    assert "is not an E.164 number" in result.stderr


def test_serve_refuses_a_bad_verified_number_from_the_environment(tmp_path: Path) -> None:
    import os

    result = subprocess.run([sys.executable, "-m", "ivrsim", "serve", "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "IVRSIM_VERIFIED_NUMBERS": "+15559876543,555"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ivrsim: error: IVRSIM_VERIFIED_NUMBERS: '555' is not an E.164 number")


@pytest.mark.parametrize(
    "args",
    [
        ["call", "--to", "+1234", "--api-key", "k"],
        ["call", "--to", "+15550100001", "--from", "+12", "--api-key", "k"],
        ["demo", "--from", "+1234567"],
        ["serve", "--verified-number", "+1234567"],
    ],
)
def test_every_command_takes_the_apis_e164_rule(tmp_path: Path, args: list[str]) -> None:
    """8 to 15 digits, as the API checks (ivrsim.phone_numbers): what the CLI takes, the server takes."""
    result = ivrsim(*args, "--data-dir", str(tmp_path)) if args[0] != "call" else ivrsim(*args, "--base-url", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert "is not an E.164 number" in result.stderr and "8 to 15 digits" in result.stderr


def test_one_e164_rule_for_schemas_settings_and_cli() -> None:
    from pydantic import ValidationError

    from ivrsim.api.schemas import CallCreate
    from ivrsim.phone_numbers import is_e164
    from ivrsim.settings import Settings

    for number, ok in (("+15559876543", True), ("+1234567", False), ("+12345678", True), ("+1234567890123456", False), ("+05551234567", False)):
        assert is_e164(number) is ok
        try:
            Settings(verified_numbers=[number])
            CallCreate.model_validate({"to": number, "from": number, "tts": {"text": "hi"}})
            accepted = True
        except ValidationError:
            accepted = False
        assert accepted is ok, number


def test_demo_reads_a_local_audio_url_from_its_media_root(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    soundfile.write(media / "jingle.wav", generate_dtmf("5", 8000), 8000)
    result = ivrsim("demo", "--data-dir", str(tmp_path / "data"), "--media-root", str(media), "--audio-url", str(media / "jingle.wav"), "--no-gather", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["call"]["status"] == "completed"
    missing = ivrsim("demo", "--data-dir", str(tmp_path / "data"), "--media-root", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "--media-root" in missing.stderr


@pytest.fixture(scope="module")
def call_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from ivrsim.api.server import BackgroundServer
    from ivrsim.settings import Settings

    settings = Settings(api_key="call-key", port=0, data_dir=tmp_path_factory.mktemp("call-server"))
    with BackgroundServer(settings) as server:
        yield server.base_url


def call_events(base_url: str, *args: str) -> tuple[int, list[dict[str, object]]]:
    """Run `ivrsim call` against ``base_url`` given only by IVRSIM_BASE_URL; its exit code and events."""
    import os

    result = subprocess.run([sys.executable, "-m", "ivrsim", "call", *args, "--json"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "IVRSIM_BASE_URL": base_url, "IVRSIM_API_KEY": "call-key"})
    assert result.returncode in (0, 1) and "Traceback" not in result.stderr, result.stderr
    return result.returncode, [json.loads(line) for line in result.stdout.splitlines()]


def at(events: list[dict[str, object]], kind: str) -> dict[str, object]:
    return next(e for e in events if e["type"] == kind)


def test_call_passes_the_remaining_request_options(call_server: str) -> None:
    silent = ("--to", "+15550100002", "--tts", "Enter your code.", "--gather-digits", "4")
    _, short = call_events(call_server, *silent, "--gather-timeout", "1")
    _, long = call_events(call_server, *silent, "--gather-timeout", "3")
    assert (at(short, "gather.completed")["reason"], at(long, "gather.completed")["reason"]) == ("timeout", "timeout")
    waited = float(at(long, "gather.completed")["call_time_s"]) - float(at(short, "gather.completed")["call_time_s"])  # type: ignore[arg-type]
    assert waited == pytest.approx(2.0, abs=0.05)
    _, fast = call_events(call_server, *silent, "--gather-timeout", "1", "--speed", "2", "--pitch", "4")
    assert float(at(fast, "gather.completed")["call_time_s"]) < float(at(short, "gather.completed")["call_time_s"])  # type: ignore[arg-type]

    code, unanswered = call_events(call_server, "--to", "+15550100408", "--tts", "hi", "--ring-timeout", "2")
    assert code == 1 and unanswered[-1]["type"] == "call.no-answer"
    rang = float(unanswered[-1]["call_time_s"]) - float(at(unanswered, "call.ringing")["call_time_s"])  # type: ignore[arg-type]
    assert rang == pytest.approx(2.0, abs=0.05)

    code, recorded = call_events(call_server, "--to", "+15550100001", "--tts", "Enter your PIN.", "--gather-digits", "4", "--record",
                                 "--recording-channels", "mono", "--transcribe")
    assert code == 0 and at(recorded, "recording.started")["channels"] == "mono"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--speed", "9"], "--speed"),
        (["--pitch", "30"], "--pitch"),
        (["--gather-timeout", "0"], "--gather-timeout"),
        (["--ring-timeout", "0"], "--ring-timeout"),
        (["--recording-channels", "quad"], "--recording-channels"),
        (["--recording-channels", "mono"], "add --record"),
    ],
)
def test_call_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = ivrsim("call", "--to", "+15550100001", "--tts", "hi", "--api-key", "k", "--base-url", "http://127.0.0.1:9", *args)
    assert result.returncode == 2 and message in result.stderr


def test_call_voice_without_tts_is_a_usage_error() -> None:
    result = ivrsim("call", "--to", "+15550100001", "--audio-url", "http://x/a.wav", "--voice", "en-US-Neural2-F", "--api-key", "k")
    assert result.returncode == 2 and "give --tts TEXT" in result.stderr


def test_the_python_client_reads_ivrsim_base_url(call_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from ivrsim.client import Canary, CanaryError

    monkeypatch.setenv("IVRSIM_BASE_URL", call_server)
    with Canary("call-key") as client:
        assert client.base_url == call_server
        placed = client.voice.call(to="+15550100001", from_="+15559876543", tts={"text": "hi"})
        assert client.voice.wait(placed.id).status == "completed"
        with pytest.raises(CanaryError) as refused:
            client.voice.get("call_missing")
        assert refused.value.status == 404


def test_inline_scripts_and_machines_have_their_voices_checked_at_load(tmp_path: Path) -> None:
    from ivrsim.engine.callees import Phonebook, ScriptError

    book = tmp_path / "book.yaml"
    book.write_text("numbers:\n  '+15550100009': {kind: machine, voice: fr-FR-Neural2-Z}\n")
    with pytest.raises(ScriptError, match=r"\+15550100009: voice: unknown voice 'fr-FR-Neural2-Z'; did you mean"):
        Phonebook.load(book)
    book.write_text("numbers:\n  '+15550100009': {kind: scripted, script: {steps: [{say: {text: hi, speed: 9}}]}}\n")
    with pytest.raises(ScriptError, match=r"\+15550100009: step 1: say.speed must be from 0.25 to 4.0"):
        Phonebook.load(book)


# -- exit codes and messages a hostile trial found (issue 8) ------------------------------------------------


def test_call_without_tts_or_audio_url_is_a_usage_error_before_sending() -> None:
    result = ivrsim("call", "--to", "+15550100001", "--api-key", "k", "--base-url", "http://127.0.0.1:9")
    assert result.returncode == 2 and "give --tts TEXT" in result.stderr and "--audio-url" in result.stderr
    assert "cannot reach" not in result.stderr


@pytest.mark.parametrize("command", [["call", "--to", "+15550100001", "--tts", "hi"], ["webhooks", "list"]])
def test_a_base_url_that_is_not_a_url_is_a_usage_error(command: list[str]) -> None:
    import os

    result = subprocess.run([sys.executable, "-m", "ivrsim", *command], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "IVRSIM_BASE_URL": "notaurl", "IVRSIM_API_KEY": "k"})
    assert result.returncode == 2
    assert "'notaurl' is not an http(s) URL" in result.stderr and "IVRSIM_BASE_URL" in result.stderr and "--base-url" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tts", "hi", "--webhook-url", "http://[::1/x"], "webhook_url must be an http:// or https:// URL"),
        (["--tts", "hi", "--webhook-url", "http://u:p@127.0.0.1:47001/x"], "credentials in URLs are not allowed"),
        (["--audio-url", "http://u:p@127.0.0.1:47001/x"], "e.g. https://example.com/prompt.wav"),
    ],
)
def test_input_the_server_refuses_with_422_exits_2_with_its_message(call_server: str, args: list[str], message: str) -> None:
    import os

    result = subprocess.run([sys.executable, "-m", "ivrsim", "call", "--to", "+15550100001", *args], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "IVRSIM_BASE_URL": call_server, "IVRSIM_API_KEY": "call-key"})
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_webhooks_list_exits_2_on_a_422(call_server: str) -> None:
    import os

    result = subprocess.run([sys.executable, "-m", "ivrsim", "webhooks", "list", "--call-id", "x" * 5000], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "IVRSIM_BASE_URL": call_server, "IVRSIM_API_KEY": "call-key"})
    assert result.returncode == 2 and "422 invalid_parameter: call_id" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [["dtmf", "generate", "1", "-o", "{missing}/x.wav"], ["say", "hi", "-o", "{missing}/x.wav"], ["snapshot", "save", "{missing}/x.tar.gz"]],
)
def test_writing_into_a_missing_folder_names_the_folder(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "nowhere"
    result = ivrsim(*[a.format(missing=missing) for a in args], *(["--data-dir", str(tmp_path)] if args[0] == "snapshot" else []))
    assert result.returncode == 2
    assert f"the folder {missing} does not exist" in result.stderr
    assert "System error" not in result.stderr and ".partial" not in result.stderr


def test_snapshot_save_names_a_missing_folder_through_the_library_too(tmp_path: Path) -> None:
    from ivrsim.store.maintenance import MaintenanceError, save_snapshot
    from ivrsim.store.sqlite import Store

    Store(tmp_path / "data" / "ivrsim.sqlite3").close()
    with pytest.raises(MaintenanceError, match=r"the folder .*nowhere does not exist"):
        save_snapshot(tmp_path / "data", tmp_path / "nowhere" / "x.tar.gz")


def test_serve_prints_its_url_alone_on_stdout(tmp_path: Path) -> None:
    import os
    import urllib.request

    env = {**os.environ, "IVRSIM_API_KEY": "url-key"}
    server = subprocess.Popen([sys.executable, "-m", "ivrsim", "serve", "--port", "0", "--data-dir", str(tmp_path), "--access-log"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()  # bounded: the process ends (EOF) if it cannot start
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0"), url
        with urllib.request.urlopen(f"{url}/_sim/health", timeout=30) as answer:
            assert answer.status == 200
    finally:
        server.terminate()
        stdout, stderr = server.communicate(timeout=30)
    assert stdout == ""  # nothing after the URL: the log, the key and the access log go to stderr
    assert "Started server process" in stderr and "API key: url-key" in stderr and "/_sim/health" in stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('numbers:\n  "+15550100001": {kind: busy\n  x: [\n', "not valid YAML at line 3, column 4: "),
        ("x: 1\n", "unknown top-level key 'x'"),
        ("default: {kind: busy}\n", "no 'numbers'"),
    ],
)
def test_serve_refuses_a_bad_phonebook_document_in_one_line(tmp_path: Path, text: str, message: str) -> None:
    book = tmp_path / "book.yaml"
    book.write_text(text)
    result = ivrsim("serve", "--data-dir", str(tmp_path / "data"), "--port", "0", "--phonebook", str(book))
    assert result.returncode == 1
    assert result.stderr.startswith(f"ivrsim: error: phonebook {book}: {message}") and len(result.stderr.strip().splitlines()) == 1


# -- a total deadline for every request, a silence bound for the event stream (issue 8) ----------------


class _StuckServer:
    """A loopback server that answers too slowly. Under ``/slow``: headers, then one body byte every
    0.5 s (each byte well within any read timeout); under ``/stream``: ``POST .../calls`` places a call at
    once, and its event stream sends one keep-alive comment, then nothing."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.stop = threading.Event()
        stop = self.stop

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/stream/") and self.command == "POST":
                    body = json.dumps({"id": "call_stuck", "status": "queued", "to": "+15551234567", "from": "+15559876543"}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                if self.path.startswith("/stream/"):
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
                    stop.wait(60)  # silent until the test ends (bounded)
                    return
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "1000")
                self.end_headers()
                try:
                    for _ in range(120):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        if stop.wait(0.5):
                            return
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = _answer  # noqa: N815

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, name="stuck-server", daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def stuck_server() -> Iterator[_StuckServer]:
    server = _StuckServer()
    yield server
    server.stop.set()
    server.httpd.shutdown()
    server.httpd.server_close()


def _against(base_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``ivrsim ARGS`` with the server given only by IVRSIM_BASE_URL and short client bounds."""
    import os

    env = {**os.environ, "IVRSIM_BASE_URL": base_url, "IVRSIM_API_KEY": "k", "IVRSIM_CLIENT_TIMEOUT_S": "2", "IVRSIM_CLIENT_STREAM_SILENCE_S": "1.5"}
    return subprocess.run([sys.executable, "-m", "ivrsim", *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("command", [["webhooks", "list"], ["call", "--to", "+15551234567", "--tts", "Hello."]], ids=["webhooks-list", "call"])
def test_a_trickling_server_ends_at_the_clients_total_deadline(stuck_server: _StuckServer, command: list[str]) -> None:
    result = _against(stuck_server.url + "/slow", *command)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("ivrsim: error: ") and "within 2 s (total deadline, IVRSIM_CLIENT_TIMEOUT_S)" in result.stderr, result.stderr


def test_a_silent_event_stream_ends_the_call_command(stuck_server: _StuckServer) -> None:
    result = _against(stuck_server.url + "/stream", "call", "--to", "+15551234567", "--tts", "Hello.")
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert "event stream of call call_stuck" in result.stderr and "silent for 1.5 s (IVRSIM_CLIENT_STREAM_SILENCE_S" in result.stderr, result.stderr


def test_a_bad_client_timeout_setting_is_one_line(stuck_server: _StuckServer) -> None:
    import os

    env = {**os.environ, "IVRSIM_BASE_URL": stuck_server.url, "IVRSIM_API_KEY": "k", "IVRSIM_CLIENT_TIMEOUT_S": "soon"}
    result = subprocess.run([sys.executable, "-m", "ivrsim", "webhooks", "list"], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "IVRSIM_CLIENT_TIMEOUT_S='soon' is not a number" in result.stderr
