"""Loading a call's ``audio_url``: http(s) through httpx, or a local file inside the allowed roots.

- http and https: connect and read timeouts, a TOTAL deadline per fetch (``fetch_deadline_s``: every
  socket read and connect waits at most what is left of it, so a server that trickles one byte at a time
  cannot hold a fetch longer), a size cap (checked against Content-Length and again while streaming), a
  bounded number of redirects. Responses are cached on disk by URL with their ``ETag`` and
  ``Last-Modified``; the next load revalidates with ``If-None-Match`` / ``If-Modified-Since`` and a
  ``304 Not Modified`` reuses the cached bytes. The cache folder is bounded in bytes (least recently used
  files go first).
- Local paths and ``file://`` URLs: only inside ``MediaSettings.allowed_roots`` (after resolving ``..``
  and symlinks), so a request cannot read ``/etc/shadow``. ``check`` says so without reading anything,
  for the API to refuse such a request at once.
- Decoding is by content, never by name: the bytes are sniffed for a known container first (WAV, AIFF,
  AU, CAF, W64, FLAC, OGG, MP3), and only then handed to libsndfile; anything else is ``NotAudioError``,
  whose message describes what arrived (content type, size) and never quotes it. The result is mono
  (channels averaged) at the requested rate.
- Blocking work runs on the loader's own bounded pool (threads named ``ivrsim-media``), never on
  asyncio's default pool, so slow downloads cannot starve text to speech or the calls. One host:port holds
  at most ``per_host_workers`` of them, so one slow host cannot starve the others; a fetch's deadline
  starts when its worker starts it, and waiting for a turn is bounded apart (``max_queue_wait_s``).

Every failure is a typed ``AudioUrlError`` whose message says what to fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import os
import re
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import httpx
import numpy as np
import soundfile

from ivrsim.audio.resample import resample
from ivrsim.http_deadline import Deadline, DeadlineTransport
from ivrsim.http_failures import describe_http_failure
from ivrsim.media.files import quiet_c_stderr
from ivrsim.media.sniff import sniff_audio
from ivrsim.exceptions import (
    AudioTooLargeError,
    AudioUrlError,
    NotAudioError,
    UrlNotAllowedError,
    UrlStatusError,
    UrlUnreachableError,
)

logger = logging.getLogger(__name__)

#: Largest audio file accepted, in bytes.
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
#: Longest one fetch may take from connect to last byte, redirects included, in seconds.
DEFAULT_FETCH_DEADLINE_S = 30.0
#: Largest size of the on-disk media cache, in bytes (least recently used files are removed first).
DEFAULT_CACHE_MAX_BYTES = 500 * 1024 * 1024
#: Threads that download and decode (``ivrsim-media``); more loads wait their turn.
DEFAULT_MEDIA_WORKERS = 4
#: Loads of one host:port that may hold media workers at once, so that one slow host cannot take them all.
DEFAULT_WORKERS_PER_HOST = 2
#: Longest a load may wait for its host's turn and a free worker before it starts, in seconds (generous:
#: a queue of slow fetches ahead of it takes several fetch deadlines).
DEFAULT_MAX_QUEUE_WAIT_S = 300.0
#: Time a load may take beyond ``fetch_deadline_s``, counted from when its worker starts it (decoding, a
#: transport that does not bound its reads) before the caller gives up on it, in seconds.
LOAD_GRACE_S = 10.0


@dataclass(frozen=True)
class MediaSettings:
    """Limits and places for ``audio_url``. Times in seconds, sizes in bytes."""

    allowed_roots: tuple[Path, ...] = ()
    max_bytes: int = DEFAULT_MAX_BYTES
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0
    fetch_deadline_s: float = DEFAULT_FETCH_DEADLINE_S
    max_redirects: int = 5
    cache_dir: Path | None = None
    cache_max_bytes: int = DEFAULT_CACHE_MAX_BYTES
    workers: int = DEFAULT_MEDIA_WORKERS
    per_host_workers: int = DEFAULT_WORKERS_PER_HOST
    max_queue_wait_s: float = DEFAULT_MAX_QUEUE_WAIT_S


@dataclass
class LoadedAudio:
    """Decoded audio from a URL: float32 ``samples`` at ``rate_hz``, mono (1-D), or one column per channel
    (2-D) when loaded with ``keep_channels``."""

    url: str
    samples: np.ndarray
    rate_hz: int
    source_rate_hz: int
    source_channels: int
    size_bytes: int
    from_cache: bool
    content_type: str | None = None

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.rate_hz


class AudioUrlLoader:
    """Fetches and decodes ``audio_url``s under ``settings``; thread-safe. Owns a bounded thread pool
    (``ivrsim-media``) for ``load_async``: call ``close`` when done."""

    def __init__(self, settings: MediaSettings | None = None, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings or MediaSettings()
        if self.settings.cache_dir is not None:
            self.settings.cache_dir.mkdir(parents=True, exist_ok=True)
        s = self.settings
        self._deadline = Deadline()
        self._client = httpx.Client(
            timeout=httpx.Timeout(s.read_timeout_s, connect=s.connect_timeout_s),
            follow_redirects=True,
            max_redirects=s.max_redirects,
            transport=transport or DeadlineTransport(self._deadline),
            trust_env=False,  # no proxy or netrc from the environment: every socket stays under the deadline
            headers={"User-Agent": "ivrsim (audio_url loader)", "Accept": "audio/*, */*;q=0.5"},
        )
        self._executor = ThreadPoolExecutor(max_workers=max(1, s.workers), thread_name_prefix="ivrsim-media")
        self._lock = threading.Lock()
        #: Per (event loop, host:port): the semaphore bounding that host's loads, and how many use it.
        self._host_slots: dict[tuple[asyncio.AbstractEventLoop, str], tuple[asyncio.Semaphore, int]] = {}

    def close(self) -> None:
        """Stop the media threads (loads not yet started are cancelled) and close the HTTP client."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def check(self, url: str) -> None:
        """Refuse what ``load`` would refuse before any I/O: an empty URL, an unsupported scheme, a local
        path or ``file://`` URL outside the media roots (or with no roots). Only resolves the path."""
        self._source(url)

    def local_file(self, url: str) -> Path | None:
        """Where ``url``'s bytes already are on this machine, with no fetch: a local path inside the media
        roots, or an http(s) URL's body in the media cache (None when it is not cached there). Raises what
        ``check`` raises."""
        kind, location = self._source(url)
        if kind == "file":
            return Path(location)
        paths = self._cache_paths(url)
        return paths[0] if paths is not None and paths[0].is_file() else None

    def load(self, url: str, rate_hz: int, keep_channels: bool = False) -> LoadedAudio:
        """Fetch (or read) ``url`` and decode it to float32 at ``rate_hz``: mono, or with ``keep_channels``
        one column per channel (a recording's parties, for analysis)."""
        kind, location = self._source(url)
        if kind == "http":
            data, content_type, from_cache = self._fetch(url)
        else:
            data, content_type, from_cache = self._read_local(url, Path(location)), None, False
        return self._decode(url, data, content_type, from_cache, rate_hz, keep_channels)

    async def load_async(self, url: str, rate_hz: int) -> LoadedAudio:
        """``load`` on the loader's own pool, so that the event loop (and TTS) keep running.

        Fair to other hosts: at most ``per_host_workers`` loads of one host:port hold workers at a time
        (a slot taken here, before the pool), so a slow host cannot take every worker. Two bounds, each
        with its own message: waiting for a slot and a worker (``max_queue_wait_s``), and the load itself,
        timed from when a worker starts it (the fetch deadline plus ``LOAD_GRACE_S``, a backstop)."""
        s = self.settings
        loop = asyncio.get_running_loop()
        host = _host_key(url)
        give_up_at = loop.time() + s.max_queue_wait_s
        slot = self._host_slot(loop, host) if host is not None else None
        try:
            if slot is not None:
                try:
                    await asyncio.wait_for(slot.acquire(), timeout=s.max_queue_wait_s)
                except TimeoutError:
                    raise self._queued_too_long(url, host) from None
            try:
                return await self._run_on_worker(url, rate_hz, loop, give_up_at, host)
            finally:
                if slot is not None:
                    slot.release()
        finally:
            if host is not None:
                self._leave_host_slot(loop, host)

    async def _run_on_worker(self, url: str, rate_hz: int, loop: asyncio.AbstractEventLoop, give_up_at: float, host: str | None) -> LoadedAudio:
        started = asyncio.Event()

        def run() -> LoadedAudio:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
                loop.call_soon_threadsafe(started.set)
            return self.load(url, rate_hz)

        future = self._executor.submit(run)
        result = asyncio.wrap_future(future)
        start_seen = asyncio.ensure_future(started.wait())
        either: set[asyncio.Future[Any]] = {result, start_seen}
        try:
            await asyncio.wait(either, timeout=max(0.0, give_up_at - loop.time()), return_when=asyncio.FIRST_COMPLETED)
            if not result.done() and not started.is_set() and future.cancel():
                raise self._queued_too_long(url, host)
            limit_s = self.settings.fetch_deadline_s + LOAD_GRACE_S  # from the worker's start
            try:
                return await asyncio.wait_for(result, timeout=limit_s)
            except TimeoutError:
                raise UrlUnreachableError(
                    url, f"was not loaded within {limit_s:g} s of starting (fetch deadline {self.settings.fetch_deadline_s:g} s, "
                    "IVRSIM_MEDIA_DEADLINE_S): the server is too slow; use a faster server or a local file"
                ) from None
        finally:
            start_seen.cancel()
            if not result.done():
                result.cancel()  # cancels the load if it has not started; a running one ends at its deadline

    def _queued_too_long(self, url: str, host: str | None) -> UrlUnreachableError:
        s = self.settings
        per_host = f" and at most {s.per_host_workers} from {host} at a time" if host else ""
        return UrlUnreachableError(
            url, f"waited {s.max_queue_wait_s:g} s for a media worker without starting (IVRSIM_MEDIA_QUEUE_WAIT_S): "
            f"{s.workers} workers{per_host} (IVRSIM_MEDIA_WORKERS_PER_HOST) were busy with earlier fetches; "
            "try again later, or use a faster server or a local file"
        )

    def _host_slot(self, loop: asyncio.AbstractEventLoop, host: str) -> asyncio.Semaphore:
        """The semaphore of ``host`` on ``loop`` (made on first use, dropped when its last user leaves)."""
        with self._lock:
            semaphore, users = self._host_slots.get((loop, host), (None, 0))
            if semaphore is None:
                semaphore = asyncio.Semaphore(max(1, self.settings.per_host_workers))
            self._host_slots[(loop, host)] = (semaphore, users + 1)
            return semaphore

    def _leave_host_slot(self, loop: asyncio.AbstractEventLoop, host: str) -> None:
        with self._lock:
            semaphore, users = self._host_slots[(loop, host)]
            if users <= 1:
                del self._host_slots[(loop, host)]
            else:
                self._host_slots[(loop, host)] = (semaphore, users - 1)

    def _source(self, url: str) -> tuple[str, str]:
        """("http", url) or ("file", resolved path inside a media root); raises what is not allowed."""
        if not isinstance(url, str) or not url.strip():
            raise AudioUrlError(str(url), "is empty: give an http(s) URL or a file path")
        parsed = urlparse(url)
        scheme = parsed.scheme.lower()
        if scheme in ("http", "https"):
            return "http", url
        if scheme == "file" or scheme == "" or (len(scheme) == 1 and os.name == "nt"):
            path = unquote(parsed.path) if scheme == "file" else url
            return "file", str(self._inside_roots(url, path))
        raise UrlNotAllowedError(url, f"the scheme {scheme!r} is not supported: use http, https, file, or a path")

    # -- local files ----------------------------------------------------------------------------------

    def _inside_roots(self, url: str, path_text: str) -> Path:
        roots = [root.resolve() for root in self.settings.allowed_roots]
        if not roots:
            raise UrlNotAllowedError(url, "local files are not allowed: configure a media root that holds it (--media-root or IVRSIM_MEDIA_ROOTS)")
        if "\0" in path_text:
            raise UrlNotAllowedError(url, "holds a NUL character: give a plain file path")
        path = Path(path_text)
        resolved = (path if path.is_absolute() else roots[0] / path).resolve()
        if not any(resolved == root or root in resolved.parents for root in roots):
            allowed = ", ".join(str(root) for root in roots)
            raise UrlNotAllowedError(url, f"is outside the allowed media roots ({allowed})")
        return resolved

    def _read_local(self, url: str, resolved: Path) -> bytes:
        if not resolved.is_file():
            raise UrlUnreachableError(url, "no such file in the media roots")
        size = resolved.stat().st_size
        if size > self.settings.max_bytes:
            raise AudioTooLargeError(url, f"is {size} bytes; the limit is {self.settings.max_bytes}")
        return resolved.read_bytes()

    # -- http(s) --------------------------------------------------------------------------------------

    def _cache_paths(self, url: str) -> tuple[Path, Path] | None:
        if self.settings.cache_dir is None:
            return None
        key = hashlib.sha256(url.encode()).hexdigest()[:32]
        return self.settings.cache_dir / f"{key}.bin", self.settings.cache_dir / f"{key}.json"

    def _fetch(self, url: str) -> tuple[bytes, str | None, bool]:
        """GET ``url`` within the fetch deadline (set for this thread, read by every socket operation)."""
        with self._deadline.within(self.settings.fetch_deadline_s):
            return self._fetch_within_deadline(url)

    def _fetch_within_deadline(self, url: str) -> tuple[bytes, str | None, bool]:
        deadline_at = self._deadline.at
        assert deadline_at is not None
        deadline_s = self.settings.fetch_deadline_s
        past_deadline = f"did not arrive within the fetch deadline of {deadline_s:g} s (IVRSIM_MEDIA_DEADLINE_S); use a faster server or a local file"
        paths = self._cache_paths(url)
        cached_meta: dict[str, str] = {}
        if paths is not None and paths[0].exists() and paths[1].exists():
            try:
                cached_meta = json.loads(paths[1].read_text())
            except (OSError, ValueError):
                cached_meta = {}
        headers = {}
        if cached_meta.get("etag"):
            headers["If-None-Match"] = cached_meta["etag"]
        if cached_meta.get("last_modified"):
            headers["If-Modified-Since"] = cached_meta["last_modified"]
        limit = self.settings.max_bytes
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                if response.status_code == 304 and paths is not None and cached_meta:
                    data = paths[0].read_bytes()
                    self._touch(paths)
                    return data, cached_meta.get("content_type"), True
                if response.status_code >= 400:
                    raise UrlStatusError(url, response.status_code)
                declared = response.headers.get("Content-Length")
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    raise AudioTooLargeError(url, f"is {declared} bytes (Content-Length); the limit is {limit}")
                chunks, received = [], 0
                for chunk in response.iter_bytes():
                    received += len(chunk)
                    if received > limit:
                        raise AudioTooLargeError(url, f"is larger than the limit of {limit} bytes")
                    if time.monotonic() > deadline_at:  # for transports that do not bound their reads
                        raise UrlUnreachableError(url, f"{past_deadline} ({received} bytes had arrived)")
                    chunks.append(chunk)
                data = b"".join(chunks)
                meta = {
                    "url": url,
                    "etag": response.headers.get("ETag", ""),
                    "last_modified": response.headers.get("Last-Modified", ""),
                    "content_type": response.headers.get("Content-Type", ""),
                }
        except httpx.TooManyRedirects as error:
            raise UrlUnreachableError(url, f"more than {self.settings.max_redirects} redirects") from error
        except httpx.TimeoutException as error:
            if time.monotonic() >= deadline_at - 0.05:
                raise UrlUnreachableError(url, past_deadline) from error
            raise UrlUnreachableError(
                url, f"timed out (connect {self.settings.connect_timeout_s:g} s, read {self.settings.read_timeout_s:g} s)"
            ) from error
        except httpx.ConnectError as error:
            raise UrlUnreachableError(url, f"{describe_http_failure(error)}; check the host and port") from error
        except httpx.HTTPError as error:  # a fixed phrase: protocol errors quote what the server sent
            raise UrlUnreachableError(url, f"the transfer failed: {describe_http_failure(error)}") from error
        if paths is not None and (meta["etag"] or meta["last_modified"]):
            self._store(paths, data, meta)
        return data, meta["content_type"] or None, False

    def _store(self, paths: tuple[Path, Path], data: bytes, meta: dict[str, str]) -> None:
        if len(data) > self.settings.cache_max_bytes:
            return  # larger than the whole cache: kept only for this load
        with self._lock:
            try:
                for path, content in ((paths[0], data), (paths[1], json.dumps(meta).encode())):
                    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
                    with os.fdopen(handle, "wb") as out:
                        out.write(content)
                    os.replace(temporary, path)
            except OSError as error:
                logger.warning("media cache: could not store %s: %s", paths[0].name, error)
                return
            self._touch(paths)
            self._prune(keep=paths[0])

    def _touch(self, paths: tuple[Path, Path]) -> None:
        """Mark a cache entry as used now: the modification time orders the least recently used. Set from
        ``time.time_ns()``, not the file system's coarse clock, so loads in quick succession keep their order."""
        now_ns = time.time_ns()
        for path in paths:
            with contextlib.suppress(OSError):
                os.utime(path, ns=(now_ns, now_ns))

    def _prune(self, keep: Path) -> None:
        """Remove the least recently used cache entries until the folder holds at most ``cache_max_bytes``."""
        folder = self.settings.cache_dir
        if folder is None:
            return
        entries, total = [], 0
        for data_path in folder.glob("*.bin"):
            with contextlib.suppress(OSError):
                stat = data_path.stat()
                total += stat.st_size
                if data_path != keep:  # the entry just stored stays, whatever the clock's resolution
                    entries.append((stat.st_mtime_ns, data_path, stat.st_size))
        for _, data_path, size in sorted(entries):
            if total <= self.settings.cache_max_bytes:
                break
            for path in (data_path, data_path.with_suffix(".json")):
                with contextlib.suppress(OSError):
                    path.unlink()
            total -= size

    def cache_bytes(self) -> int:
        """Bytes of audio the media cache folder holds now."""
        folder = self.settings.cache_dir
        if folder is None:
            return 0
        total = 0
        for data_path in folder.glob("*.bin"):
            with contextlib.suppress(OSError):
                total += data_path.stat().st_size
        return total

    # -- decoding -------------------------------------------------------------------------------------

    def _decode(self, url: str, data: bytes, content_type: str | None, from_cache: bool, rate_hz: int, keep_channels: bool = False) -> LoadedAudio:
        if not data:
            raise NotAudioError(url, "the response is empty (0 bytes)")
        received = _describe(content_type, len(data))
        container = sniff_audio(data)
        if container is None:
            raise NotAudioError(url, f"is not audio: received {received} in no audio format ivrsim knows; use WAV, MP3, FLAC or OGG")
        try:
            with quiet_c_stderr() if container == "MP3" else contextlib.nullcontext():  # libmpg123 prints
                samples, source_rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
            raise NotAudioError(
                url, f"is not audio that can be decoded: received {received}, which looks like {container} but does not decode; use WAV, MP3, FLAC or OGG"
            ) from error
        if len(samples) == 0:
            raise NotAudioError(url, "decodes to no audio (0 frames)")
        if keep_channels:
            decoded = np.stack([resample(samples[:, c], int(source_rate), rate_hz) for c in range(samples.shape[1])], axis=1)
        else:
            decoded = resample(samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0], int(source_rate), rate_hz)
        return LoadedAudio(
            url=url,
            samples=decoded,
            rate_hz=rate_hz,
            source_rate_hz=int(source_rate),
            source_channels=int(samples.shape[1]),
            size_bytes=len(data),
            from_cache=from_cache,
            content_type=content_type,
        )


def _host_key(url: str) -> str | None:
    """``host:port`` of an http(s) URL (what the per-host limit counts), None for local files."""
    try:
        parsed = urlparse(url)
        scheme = parsed.scheme.lower()
        if scheme not in ("http", "https") or not parsed.hostname:
            return None
        return f"{parsed.hostname.lower()}:{parsed.port or (443 if scheme == 'https' else 80)}"
    except ValueError:  # a bad port: ``load`` says what is wrong with it
        return None


_CONTENT_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,64}")


def _describe(content_type: str | None, size_bytes: int) -> str:
    """What arrived, in words that never quote it: the declared media type (when well formed) and size."""
    kind = (content_type or "").split(";")[0].strip()
    shown = f"Content-Type {kind.lower()}" if _CONTENT_TYPE.fullmatch(kind) else "no usable Content-Type"
    return f"{size_bytes} bytes, {shown}"
