"""Loading a call's ``audio_url``: http(s) through httpx, or a local file inside the allowed roots.

- http and https: connect and read timeouts, a size cap (checked against Content-Length and again while
  streaming), a bounded number of redirects. Responses are cached on disk by URL with their ``ETag`` and
  ``Last-Modified``; the next load revalidates with ``If-None-Match`` / ``If-Modified-Since`` and a
  ``304 Not Modified`` reuses the cached bytes.
- Local paths and ``file://`` URLs: only inside ``MediaSettings.allowed_roots`` (after resolving ``..``
  and symlinks), so a request cannot read ``/etc/shadow``.
- Decoding is by content, never by name: whatever libsndfile recognises (WAV, MP3, FLAC, OGG) is audio,
  anything else is ``NotAudioError``. The result is mono (channels averaged) at the requested rate.

Every failure is a typed ``AudioUrlError`` whose message says what to fix.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx
import numpy as np
import soundfile

from ivrsim.audio.resample import resample
from ivrsim.exceptions import (
    AudioTooLargeError,
    AudioUrlError,
    NotAudioError,
    UrlNotAllowedError,
    UrlStatusError,
    UrlUnreachableError,
)

#: Largest audio file accepted, in bytes.
DEFAULT_MAX_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class MediaSettings:
    """Limits and places for ``audio_url``. Times in seconds, sizes in bytes."""

    allowed_roots: tuple[Path, ...] = ()
    max_bytes: int = DEFAULT_MAX_BYTES
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0
    max_redirects: int = 5
    cache_dir: Path | None = None


@dataclass
class LoadedAudio:
    """Decoded audio from a URL: float32 mono ``samples`` at ``rate_hz``."""

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
    """Fetches and decodes ``audio_url``s under ``settings``; thread-safe."""

    def __init__(self, settings: MediaSettings | None = None, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings or MediaSettings()
        if self.settings.cache_dir is not None:
            self.settings.cache_dir.mkdir(parents=True, exist_ok=True)
        s = self.settings
        self._client = httpx.Client(
            timeout=httpx.Timeout(s.read_timeout_s, connect=s.connect_timeout_s),
            follow_redirects=True,
            max_redirects=s.max_redirects,
            transport=transport,
            headers={"User-Agent": "ivrsim (audio_url loader)", "Accept": "audio/*, */*;q=0.5"},
        )
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def load(self, url: str, rate_hz: int) -> LoadedAudio:
        """Fetch (or read) ``url`` and decode it to mono float32 at ``rate_hz``."""
        if not isinstance(url, str) or not url.strip():
            raise AudioUrlError(str(url), "is empty: give an http(s) URL or a file path")
        parsed = urlparse(url)
        scheme = parsed.scheme.lower()
        if scheme in ("http", "https"):
            data, content_type, from_cache = self._fetch(url)
        elif scheme == "file" or scheme == "" or (len(scheme) == 1 and os.name == "nt"):
            path = unquote(parsed.path) if scheme == "file" else url
            data, content_type, from_cache = self._read_local(url, path), None, False
        else:
            raise UrlNotAllowedError(url, f"the scheme {scheme!r} is not supported: use http, https, file, or a path")
        return self._decode(url, data, content_type, from_cache, rate_hz)

    async def load_async(self, url: str, rate_hz: int) -> LoadedAudio:
        """``load`` on a worker thread, so that the event loop keeps running."""
        return await asyncio.to_thread(self.load, url, rate_hz)

    # -- local files ----------------------------------------------------------------------------------

    def _read_local(self, url: str, path_text: str) -> bytes:
        roots = [root.resolve() for root in self.settings.allowed_roots]
        if not roots:
            raise UrlNotAllowedError(url, "local files are not allowed: configure a media root that holds it")
        path = Path(path_text)
        resolved = (path if path.is_absolute() else roots[0] / path).resolve()
        if not any(resolved == root or root in resolved.parents for root in roots):
            allowed = ", ".join(str(root) for root in roots)
            raise UrlNotAllowedError(url, f"is outside the allowed media roots ({allowed})")
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
                    return paths[0].read_bytes(), cached_meta.get("content_type"), True
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
            raise UrlUnreachableError(
                url, f"timed out (connect {self.settings.connect_timeout_s:g} s, read {self.settings.read_timeout_s:g} s)"
            ) from error
        except httpx.ConnectError as error:
            raise UrlUnreachableError(url, f"cannot connect ({error}); check the host and port") from error
        except httpx.HTTPError as error:
            raise UrlUnreachableError(url, f"the transfer failed ({type(error).__name__}: {error})") from error
        if paths is not None and (meta["etag"] or meta["last_modified"]):
            self._store(paths, data, meta)
        return data, meta["content_type"] or None, False

    def _store(self, paths: tuple[Path, Path], data: bytes, meta: dict[str, str]) -> None:
        with self._lock:
            for path, content in ((paths[0], data), (paths[1], json.dumps(meta).encode())):
                handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
                with os.fdopen(handle, "wb") as out:
                    out.write(content)
                os.replace(temporary, path)

    # -- decoding -------------------------------------------------------------------------------------

    def _decode(self, url: str, data: bytes, content_type: str | None, from_cache: bool, rate_hz: int) -> LoadedAudio:
        if not data:
            raise NotAudioError(url, "the response is empty (0 bytes)")
        try:
            samples, source_rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
            preview = data[:24].decode("latin-1").encode("unicode_escape").decode()
            kind = f"Content-Type {content_type}, " if content_type else ""
            raise NotAudioError(
                url, f"is not audio that can be decoded ({kind}{len(data)} bytes starting {preview!r}); use WAV or MP3"
            ) from error
        if len(samples) == 0:
            raise NotAudioError(url, "decodes to no audio (0 frames)")
        mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
        return LoadedAudio(
            url=url,
            samples=resample(mono, int(source_rate), rate_hz),
            rate_hz=rate_hz,
            source_rate_hz=int(source_rate),
            source_channels=int(samples.shape[1]),
            size_bytes=len(data),
            from_cache=from_cache,
            content_type=content_type,
        )
