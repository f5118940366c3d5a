"""audio_url loading against a real HTTP server on loopback, and local files inside media roots."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ivrsim.audio.dtmf_generator import generate_dtmf
from ivrsim.audio.dtmf_receiver import detect_dtmf
from ivrsim.exceptions import (
    AudioTooLargeError,
    AudioUrlError,
    NotAudioError,
    UrlNotAllowedError,
    UrlStatusError,
    UrlUnreachableError,
)
from ivrsim.media.audio_url import AudioUrlLoader, LoadedAudio, MediaSettings
from ivrsim.testing.http import serve_bytes


def encoded(digits: str, fmt: str, rate_hz: int = 16000, channels: int = 1) -> bytes:
    signal = generate_dtmf(digits, rate_hz)
    if channels == 2:
        signal = np.stack([signal, signal], axis=1)
    buffer = io.BytesIO()
    soundfile.write(buffer, signal, rate_hz, format=fmt)
    return buffer.getvalue()


FILES = {
    "/pin.wav": (encoded("1234", "WAV"), "audio/wav"),
    "/pin.mp3": (encoded("5678", "MP3"), "audio/mpeg"),
    "/pin.flac": (encoded("90*#", "FLAC", channels=2), "audio/flac"),
    "/pin.ogg": (encoded("ABCD", "OGG", rate_hz=48000), "audio/ogg"),
    "/disguised.mp3": (encoded("147", "WAV"), "application/octet-stream"),
    "/page.wav": (b"<!DOCTYPE html><html><body>Not found</body></html>" * 4, "text/html"),
    "/empty.wav": (b"", "audio/wav"),
    "/secret.wav": (b"<html><body>SECRET-TOKEN=abc</body></html>", "text/html; charset=utf-8"),
    "/fake-mpeg.mp3": (b"\xff\xfb\x90\x00" + b"SECRET-TOKEN=abc " * 40, "audio/mpeg"),
    "/truncated.mp3": (encoded("2580", "MP3")[: len(encoded("2580", "MP3")) // 2], "audio/mpeg"),
}
#: Seconds between the bytes of /trickle.wav, and how many it sends at most.
TRICKLE_EVERY_S = 0.25
TRICKLE_BYTES = 240


class Handler(BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        Handler.hits[self.path] = Handler.hits.get(self.path, 0) + 1
        if self.path in FILES:
            body, kind = FILES[self.path]
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/etag.wav":
            body = FILES["/pin.wav"][0]
            if self.headers.get("If-None-Match") == '"v1"':
                self.send_response(304)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("ETag", '"v1"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/lastmod.wav":
            body = FILES["/pin.wav"][0]
            stamp = "Wed, 01 Jan 2025 00:00:00 GMT"
            if self.headers.get("If-Modified-Since") == stamp:
                self.send_response(304)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Last-Modified", stamp)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path in ("/missing.wav", "/broken.wav"):
            self.send_response(404 if self.path == "/missing.wav" else 500)
            self.end_headers()
        elif self.path == "/slow.wav":
            time.sleep(1.5)
            self.send_response(200)
            self.end_headers()
        elif self.path == "/trickle.wav":
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.end_headers()
            try:
                for _ in range(TRICKLE_BYTES):
                    self.wfile.write(b"\0")
                    self.wfile.flush()
                    time.sleep(TRICKLE_EVERY_S)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif self.path.startswith("/etag/"):
            body = FILES["/pin.wav"][0]
            if self.headers.get("If-None-Match") == f'"{self.path}"':
                self.send_response(304)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("ETag", f'"{self.path}"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.end_headers()
        elif self.path == "/moved.wav":
            self.send_response(301)
            self.send_header("Location", "/pin.wav")
            self.end_headers()
        elif self.path == "/huge.wav":
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
        elif self.path == "/endless.wav":
            self.send_response(200)
            self.end_headers()  # no Content-Length: stream until the client stops
            try:
                for _ in range(1000):
                    self.wfile.write(b"\0" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                pass
        else:
            self.send_response(404)
            self.end_headers()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def loader(tmp_path: Path) -> Iterator[AudioUrlLoader]:
    media = tmp_path / "media"
    media.mkdir()
    instance = AudioUrlLoader(
        MediaSettings(allowed_roots=(media,), max_bytes=2_000_000, read_timeout_s=0.5, connect_timeout_s=0.5, cache_dir=tmp_path / "cache")
    )
    yield instance
    instance.close()


def digits_of(samples: np.ndarray, rate_hz: int) -> str:
    return "".join(d.key for d in detect_dtmf(samples, rate_hz))


@pytest.mark.parametrize(("path", "digits"), [("/pin.wav", "1234"), ("/pin.mp3", "5678"), ("/pin.flac", "90*#"), ("/pin.ogg", "ABCD")])
def test_http_audio_in_every_format_decodes_to_mono_at_the_call_rate(server: str, loader: AudioUrlLoader, path: str, digits: str) -> None:
    audio = loader.load(server + path, 8000)
    assert audio.rate_hz == 8000 and audio.samples.ndim == 1
    assert digits_of(audio.samples, 8000) == digits


def test_content_decides_not_the_name(server: str, loader: AudioUrlLoader) -> None:
    assert digits_of(loader.load(server + "/disguised.mp3", 8000).samples, 8000) == "147"
    with pytest.raises(NotAudioError, match=r"200 bytes, Content-Type text/html.*use WAV, MP3"):
        loader.load(server + "/page.wav", 8000)
    with pytest.raises(NotAudioError, match="empty"):
        loader.load(server + "/empty.wav", 8000)


def test_redirects_are_followed_up_to_the_limit(server: str, loader: AudioUrlLoader) -> None:
    assert digits_of(loader.load(server + "/moved.wav", 8000).samples, 8000) == "1234"
    with pytest.raises(UrlUnreachableError, match="more than 5 redirects"):
        loader.load(server + "/loop", 8000)


@pytest.mark.parametrize(("path", "status"), [("/missing.wav", 404), ("/broken.wav", 500)])
def test_http_errors_carry_the_status(server: str, loader: AudioUrlLoader, path: str, status: int) -> None:
    with pytest.raises(UrlStatusError) as caught:
        loader.load(server + path, 8000)
    assert caught.value.status_code == status
    assert f"HTTP {status}" in str(caught.value)


def test_slow_server_times_out(server: str, loader: AudioUrlLoader) -> None:
    started = time.perf_counter()
    with pytest.raises(UrlUnreachableError, match="timed out"):
        loader.load(server + "/slow.wav", 8000)
    assert time.perf_counter() - started < 1.4


def test_unreachable_host_is_reported() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    loader = AudioUrlLoader(MediaSettings(connect_timeout_s=0.5))
    with pytest.raises(UrlUnreachableError, match="cannot connect"):
        loader.load(f"http://127.0.0.1:{port}/x.wav", 8000)


@pytest.mark.parametrize("path", ["/huge.wav", "/endless.wav"])
def test_size_cap_by_header_and_while_streaming(server: str, loader: AudioUrlLoader, path: str) -> None:
    with pytest.raises(AudioTooLargeError, match="limit"):
        loader.load(server + path, 8000)


@pytest.mark.parametrize("path", ["/etag.wav", "/lastmod.wav"], ids=["ETag", "Last-Modified"])
def test_cache_revalidates_and_reuses_on_304(server: str, tmp_path: Path, path: str) -> None:
    loader = AudioUrlLoader(MediaSettings(cache_dir=tmp_path / "c"))
    first = loader.load(server + path, 8000)
    second = loader.load(server + path, 8000)
    third = AudioUrlLoader(MediaSettings(cache_dir=tmp_path / "c")).load(server + path, 8000)  # after a restart
    assert (first.from_cache, second.from_cache, third.from_cache) == (False, True, True)
    assert np.array_equal(first.samples, second.samples) and np.array_equal(first.samples, third.samples)


def test_local_files_inside_the_media_root(tmp_path: Path, loader: AudioUrlLoader) -> None:
    media = tmp_path / "media"
    (media / "prompts").mkdir()
    (media / "prompts" / "hello.wav").write_bytes(FILES["/pin.wav"][0])
    assert digits_of(loader.load(str(media / "prompts" / "hello.wav"), 8000).samples, 8000) == "1234"
    assert digits_of(loader.load((media / "prompts" / "hello.wav").as_uri(), 8000).samples, 8000) == "1234"
    assert digits_of(loader.load("prompts/hello.wav", 8000).samples, 8000) == "1234"  # relative to the root


@pytest.mark.parametrize(
    "url",
    ["/etc/passwd", "file:///etc/shadow", "../../../../etc/passwd", "prompts/../../secret.wav", "file:///%2e%2e/etc/passwd"],
)
def test_paths_outside_the_media_root_are_refused(tmp_path: Path, loader: AudioUrlLoader, url: str) -> None:
    (tmp_path / "secret.wav").write_bytes(FILES["/pin.wav"][0])
    with pytest.raises(UrlNotAllowedError, match="outside the allowed media roots"):
        loader.load(url, 8000)


def test_a_symlink_out_of_the_root_is_refused(tmp_path: Path, loader: AudioUrlLoader) -> None:
    (tmp_path / "secret.wav").write_bytes(FILES["/pin.wav"][0])
    os.symlink(tmp_path / "secret.wav", tmp_path / "media" / "link.wav")
    with pytest.raises(UrlNotAllowedError):
        loader.load(str(tmp_path / "media" / "link.wav"), 8000)


def test_local_files_need_a_configured_root(tmp_path: Path) -> None:
    with pytest.raises(UrlNotAllowedError, match="configure a media root"):
        AudioUrlLoader(MediaSettings()).load(str(tmp_path / "x.wav"), 8000)


@pytest.mark.parametrize("url", ["ftp://example.com/a.wav", "data:audio/wav;base64,AAAA", "gopher://x/y"])
def test_other_schemes_are_refused(loader: AudioUrlLoader, url: str) -> None:
    with pytest.raises(UrlNotAllowedError, match="scheme"):
        loader.load(url, 8000)


def test_async_load_runs_off_the_event_loop(server: str, loader: AudioUrlLoader) -> None:
    import asyncio

    audio = asyncio.run(loader.load_async(server + "/pin.mp3", 16000))
    assert audio.rate_hz == 16000 and digits_of(audio.samples, 16000) == "5678"


# -- bounded work: a total deadline, a byte-bounded cache, no content in messages, quiet decoders ------


def test_a_trickling_server_is_cut_at_the_fetch_deadline(server: str, tmp_path: Path) -> None:
    loader = AudioUrlLoader(MediaSettings(fetch_deadline_s=1.0, read_timeout_s=5.0, cache_dir=tmp_path))
    try:
        started = time.monotonic()
        with pytest.raises(UrlUnreachableError, match="fetch deadline of 1 s"):
            loader.load(server + "/trickle.wav", 8000)
        # each byte comes well within the read timeout: only the deadline can end this fetch early
        assert time.monotonic() - started < TRICKLE_BYTES * TRICKLE_EVERY_S / 4
    finally:
        loader.close()


async def _until(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    """Poll ``condition`` on the event loop until it holds (bounded), never a fixed wait."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {timeout_s:g} s"
        await asyncio.sleep(0.02)


def test_a_slow_host_cannot_take_every_media_worker(server: str) -> None:
    """Four trickling loads from one host hold only two of the four workers: a load from another port
    completes while they still run, and the queued slow ones get their own full deadline once started."""
    loader = AudioUrlLoader(MediaSettings(fetch_deadline_s=3.0, read_timeout_s=5.0, workers=4, per_host_workers=2))

    async def scenario() -> tuple[LoadedAudio, list[bool], int, list[BaseException | LoadedAudio]]:
        before = Handler.hits.get("/trickle.wav", 0)
        slow = [asyncio.ensure_future(loader.load_async(server + "/trickle.wav", 8000)) for _ in range(4)]
        await _until(lambda: Handler.hits.get("/trickle.wav", 0) - before >= 2)
        with serve_bytes(FILES["/pin.wav"][0], "audio/wav") as other:
            fast = await asyncio.wait_for(loader.load_async(other + "/pin.wav", 8000), timeout=30)
        running = [not task.done() for task in slow]
        started = Handler.hits.get("/trickle.wav", 0) - before
        outcomes = await asyncio.gather(*slow, return_exceptions=True)
        return fast, running, started, outcomes

    try:
        fast, running, started, outcomes = asyncio.run(scenario())
    finally:
        loader.close()
    assert digits_of(fast.samples, 8000) == "1234"
    assert all(running) and started == 2  # the fast one did not wait for the slow host's fetches
    for outcome in outcomes:  # each slow one, queued or not, timed from its start: the fetch deadline, no queue error
        assert isinstance(outcome, UrlUnreachableError) and "fetch deadline of 3 s" in str(outcome), outcome


def test_a_load_that_waits_too_long_for_a_worker_says_so(server: str) -> None:
    loader = AudioUrlLoader(MediaSettings(fetch_deadline_s=2.0, read_timeout_s=5.0, workers=1, per_host_workers=1, max_queue_wait_s=0.3))

    async def scenario() -> tuple[BaseException | None, BaseException | LoadedAudio]:
        before = Handler.hits.get("/trickle.wav", 0)
        slow = asyncio.ensure_future(loader.load_async(server + "/trickle.wav", 8000))
        await _until(lambda: Handler.hits.get("/trickle.wav", 0) > before)
        with serve_bytes(FILES["/pin.wav"][0], "audio/wav") as other:
            try:
                await loader.load_async(other + "/pin.wav", 8000)
                queued: BaseException | None = None
            except UrlUnreachableError as error:
                queued = error
        return queued, (await asyncio.gather(slow, return_exceptions=True))[0]

    try:
        queued, slow = asyncio.run(scenario())
    finally:
        loader.close()
    assert isinstance(queued, UrlUnreachableError)
    assert "waited 0.3 s for a media worker without starting (IVRSIM_MEDIA_QUEUE_WAIT_S)" in str(queued), queued
    assert isinstance(slow, UrlUnreachableError) and "fetch deadline of 2 s" in str(slow)


def test_async_loads_run_on_the_loaders_own_threads(server: str, loader: AudioUrlLoader) -> None:
    import asyncio

    names: list[str] = []
    original = loader.load

    def spy(url: str, rate_hz: int):  # type: ignore[no-untyped-def]
        names.append(threading.current_thread().name)
        return original(url, rate_hz)

    loader.load = spy  # type: ignore[method-assign]
    asyncio.run(loader.load_async(server + "/pin.wav", 8000))
    assert names and names[0].startswith("ivrsim-media")


def test_media_cache_is_bounded_in_bytes_least_recently_used_first(server: str, tmp_path: Path) -> None:
    size = len(FILES["/pin.wav"][0])
    loader = AudioUrlLoader(MediaSettings(cache_dir=tmp_path / "c", cache_max_bytes=int(2.5 * size)))
    try:
        for name in ("a", "b", "c", "d"):
            loader.load(f"{server}/etag/{name}.wav", 8000)
            assert loader.cache_bytes() <= 2.5 * size
        assert loader.load(f"{server}/etag/d.wav", 8000).from_cache  # the newest stays
        assert not loader.load(f"{server}/etag/a.wav", 8000).from_cache  # the oldest went
    finally:
        loader.close()


def test_not_audio_is_described_never_quoted(server: str, loader: AudioUrlLoader) -> None:
    for path in ("/secret.wav", "/fake-mpeg.mp3"):
        with pytest.raises(NotAudioError) as caught:
            loader.load(server + path, 8000)
        message = str(caught.value)
        assert "SECRET" not in message and "abc" not in message
        assert f"{len(FILES[path][0])} bytes" in message and "not audio" in message


def test_decoders_print_nothing_to_stderr(server: str, loader: AudioUrlLoader, capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(NotAudioError):
        loader.load(server + "/fake-mpeg.mp3", 8000)
    loader.load(server + "/truncated.mp3", 8000)  # libmpg123 has a note about this one
    captured = capfd.readouterr()
    assert captured.err == ""


def test_check_refuses_local_paths_outside_the_roots_without_reading(tmp_path: Path, loader: AudioUrlLoader) -> None:
    media = tmp_path / "media"
    loader.check("https://example.com/a.wav")
    loader.check(str(media / "not-yet-there.wav"))  # inside the root: existence is the load's business
    for url in ("/etc/passwd", "file:///etc/shadow", "../x.wav", "ftp://example.com/a.wav", " "):
        with pytest.raises((UrlNotAllowedError, AudioUrlError)):
            loader.check(url)
    with pytest.raises(UrlNotAllowedError, match="configure a media root"):
        AudioUrlLoader(MediaSettings()).check(str(media / "a.wav"))


def test_reading_an_mp3_file_prints_nothing_to_stderr(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from ivrsim.media.files import read_audio_file

    path = tmp_path / "cut.mp3"
    path.write_bytes(FILES["/truncated.mp3"][0])
    clip = read_audio_file(path)
    assert clip.duration_s > 0 and capfd.readouterr().err == ""


def test_mp3_notes_go_to_the_debug_log_once_per_decode_through_one_sink(tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    import ctypes

    from ivrsim.media.files import read_audio_file

    c_stderr = ctypes.c_void_p.in_dll(ctypes.CDLL(None), "stderr")
    original = c_stderr.value
    path = tmp_path / "cut.mp3"
    path.write_bytes(FILES["/truncated.mp3"][0])
    with caplog.at_level("DEBUG", logger="ivrsim.media.files"):
        for _ in range(3):
            read_audio_file(path)
    notes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("decoder notes")]
    assert len(notes) == 3 and len(set(notes)) == 1  # the sink is emptied after each decode, never closed
    assert c_stderr.value == original and capfd.readouterr().err == ""


def test_only_decodes_that_may_reach_libmpg123_swap_c_stderr(tmp_path: Path) -> None:
    """A WAV decodes while another thread holds the swap: only MPEG (or unknown) audio waits for it."""
    from concurrent.futures import ThreadPoolExecutor

    from ivrsim.media.files import quiet_c_stderr, read_audio_file
    from ivrsim.media.sniff import may_be_mpeg

    wav = tmp_path / "pin.wav"
    wav.write_bytes(FILES["/pin.wav"][0])
    assert not may_be_mpeg(FILES["/pin.flac"][0]) and may_be_mpeg(FILES["/pin.mp3"][0]) and may_be_mpeg(b"junk")
    with ThreadPoolExecutor(max_workers=1) as pool, quiet_c_stderr():
        assert pool.submit(read_audio_file, wav).result(timeout=30).duration_s > 0


def test_environment_proxies_cannot_route_around_the_deadline(server: str, loader: AudioUrlLoader, monkeypatch: pytest.MonkeyPatch) -> None:
    from ivrsim.testing.http import serve_raw

    with serve_raw(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n") as proxy:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        fresh = AudioUrlLoader(loader.settings)
        try:  # straight to the server: the proxy (which would answer 502) is never asked
            assert digits_of(fresh.load(server + "/pin.wav", 8000).samples, 8000) == "1234"
        finally:
            fresh.close()


def test_a_reply_that_is_not_http_is_named_not_quoted(loader: AudioUrlLoader) -> None:
    from ivrsim.testing.http import serve_raw

    with serve_raw(b"SECRET-TOKEN=hunter2\r\n\r\n") as raw, pytest.raises(UrlUnreachableError) as caught:
        loader.load(raw + "/a.wav", 8000)
    assert "the reply is not valid HTTP" in str(caught.value) and "hunter2" not in str(caught.value)


def test_a_recording_is_encoded_to_mp3_once_however_many_ask(tmp_path: Path) -> None:
    import asyncio

    from ivrsim.media.transcode import Mp3Transcoder

    wav = tmp_path / "rec.wav"
    rng = np.random.default_rng(8)
    soundfile.write(wav, (0.1 * rng.standard_normal((8000 * 120, 2))).astype(np.float32), 8000, subtype="PCM_16")

    async def scenario() -> tuple[list[Path], int]:
        transcoder = Mp3Transcoder()
        waiters = [asyncio.ensure_future(transcoder.mp3_beside(wav)) for _ in range(6)]
        await asyncio.sleep(0)  # every request has asked before the encode can end
        waiters[0].cancel()  # a client that goes away does not cancel the encode the others wait for
        paths = await asyncio.gather(*waiters[1:])
        again = await transcoder.mp3_beside(wav)  # the MP3 now beside the WAV, not a new encode
        return [*paths, again], transcoder.encodes_started

    paths, encodes = asyncio.run(scenario())
    assert encodes == 1 and set(paths) == {tmp_path / "rec.mp3"}
    with soundfile.SoundFile(tmp_path / "rec.mp3") as mp3:
        assert mp3.channels == 2 and abs(mp3.frames / mp3.samplerate - 120) < 0.5
    # the pool's thread ends once it is idle: nothing outlives the work
    deadline = time.monotonic() + 30
    while any(t.name.startswith("ivrsim-mp3") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the MP3 thread is still alive"
        time.sleep(0.02)
