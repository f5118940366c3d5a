"""Multipart uploads of recordings, as pipecat's ``CanonicalMetricsService`` sends them to the Canonical
API: ``uploadRequest`` opens a session and hands out one pre-signed PUT URL per part, each PUT stores a
part and answers its ETag (the quoted MD5 of the part, as S3 does), ``uploadComplete`` names the parts
with their ETags and the parts are joined, checked to be audio, and stored as a recording.

Why it is shaped like S3's multipart upload: the hosted service hands out S3 URLs, so the client knows
only that protocol. The URLs carry their own key (an HMAC of slug, part number and expiry under a secret
of this server's data folder), so a PUT needs no API key, and they survive a restart.

Bounded: a part's size, the number of parts, the disk that parts of unfinished uploads use in all, and
time (an upload not completed within ``session_ttl_s`` is deleted with its parts).

On disk: ``<data>/upload-parts/<slug>/session.json`` and ``NNNNN-<md5>.part`` per part while the upload is
open; the recording then goes to ``<recordings>/uploads/<slug>.<ext>`` and the session keeps only a
``done.json`` (so a retried uploadComplete is answered again, never assembled twice) until it expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import soundfile

from ivrsim.exceptions import IvrsimError
from ivrsim.media.files import quiet_c_stderr
from ivrsim.media.sniff import container_magic, sniff_audio

logger = logging.getLogger(__name__)

#: Slugs are ours: 32 lowercase hex digits (checked before a slug ever becomes a path).
SLUG_PATTERN = re.compile(r"[0-9a-f]{32}")
#: The folder of recordings that uploads are stored in, relative to the recordings folder.
UPLOADS_FOLDER = "uploads"
#: Bytes written to disk at a time while a part streams in (each write runs off the event loop).
WRITE_CHUNK_BYTES = 1024 * 1024
#: Bytes of the assembled file read to recognise its container.
SNIFF_BYTES = 64 * 1024
#: Extension of a stored recording, by the container found in its bytes (never by the client's name).
EXTENSIONS = {"WAV": "wav", "W64": "w64", "AIFF": "aiff", "FLAC": "flac", "OGG": "ogg", "AU": "au", "CAF": "caf", "MP3": "mp3"}


class UploadError(IvrsimError):
    """An upload request that cannot be carried out: the HTTP status to answer, a message naming the
    field and the fix, and the field (``param``)."""

    code = "upload_error"

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


@dataclass(frozen=True)
class UploadLimits:
    """How long URLs and sessions live, and how much disk uploads may use."""

    url_ttl_s: float = 3600.0
    session_ttl_s: float = 7200.0
    part_max_bytes: int = 100 * 1024 * 1024
    max_parts: int = 100
    pending_max_bytes: int = 2 * 1024**3
    #: Expired sessions are looked for at most this often (on requests), in seconds.
    cleanup_interval_s: float = 60.0


@dataclass(frozen=True)
class UploadSession:
    """One upload: what uploadRequest said, and until when it may be completed (unix seconds)."""

    slug: str
    call_id: str
    assistant: dict[str, Any]
    filename: str
    parts: int
    created_at: float
    expires_at: float


@dataclass(frozen=True)
class StoredUpload:
    """A completed upload: its session and the recording, as a path relative to the recordings folder."""

    session: UploadSession
    upload: str
    container: str
    size_bytes: int
    #: False when this slug had been completed before (the recording was stored then, not now).
    assembled_now: bool


class UploadSigner:
    """Pre-signed part URLs: ``signature`` = hex HMAC-SHA256(secret, "<slug>:<part>:<expires>")."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    @classmethod
    def for_folder(cls, folder: Path) -> UploadSigner:
        """The signer of a data folder: its secret is made once (random, 0600) and kept, so URLs handed
        out before a restart still work after it."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "upload-secret"
        try:
            kept = path.read_text().strip()
        except OSError:
            kept = ""
        if re.fullmatch(r"[0-9a-f]{64}", kept):
            return cls(bytes.fromhex(kept))
        # none yet, or a torn one (an empty key would sign for anyone): a new one, written whole, then renamed in
        temporary = folder / f".upload-secret.{secrets.token_hex(4)}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        return cls(bytes.fromhex(path.read_text().strip()))

    def sign(self, slug: str, part: int, expires: int) -> str:
        return hmac.new(self._secret, f"{slug}:{part}:{expires}".encode(), hashlib.sha256).hexdigest()

    def verify(self, slug: str, part: int, expires: str | None, signature: str | None, now_s: float) -> None:
        """Raises UploadError 403 unless ``signature`` signs (slug, part, expires) and ``expires`` is
        still ahead; compared in constant time."""
        if not expires or not signature or not re.fullmatch(r"[0-9]{1,15}", expires):
            raise UploadError(403, "the upload URL is not signed: PUT to a URL exactly as uploadRequest returned it (with its expires and signature)", "signature")
        expected = self.sign(slug, part, int(expires))
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            raise UploadError(403, "the upload URL's signature does not match: PUT to a URL exactly as uploadRequest returned it", "signature")
        if int(expires) <= now_s:
            raise UploadError(403, "the upload URL has expired: ask for new URLs with POST /api/v1/recording/uploadRequest", "expires")


def normalize_etag(value: str) -> str:
    """An ETag as a client may send it back (quoted as S3's header, or bare; any case) -> bare lowercase."""
    value = value.strip()
    return value.removeprefix("W/").strip('"').strip().lower()


class UploadStore:
    """The upload sessions of one server: create, store parts, complete, clean up.

    Every method runs on the event loop; disk writes, joins and audio checks run on threads. A lock per
    slug keeps a part landing, the upload completing and its cleanup from interleaving."""

    def __init__(self, staging: Path, recordings_folder: Path, signer: UploadSigner, limits: UploadLimits,
                 clock: Callable[[], float] = time.time) -> None:
        self.staging = staging
        self.recordings_folder = recordings_folder
        self.signer = signer
        self.limits = limits
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        self._last_cleanup = 0.0
        self.staging.mkdir(parents=True, exist_ok=True)
        #: Bytes of parts on disk (and streaming in) for uploads not completed; bounded by pending_max_bytes.
        self.pending_bytes = sum(p.stat().st_size for p in self.staging.glob("*/*.part"))

    @classmethod
    def open(cls, data_dir: Path, recordings_folder: Path, limits: UploadLimits) -> UploadStore:
        return cls(data_dir / "upload-parts", recordings_folder, UploadSigner.for_folder(data_dir), limits)

    # -- sessions ---------------------------------------------------------------------------------------

    def create(self, call_id: str, assistant: dict[str, Any], filename: str, parts: int) -> UploadSession:
        """A new session for ``parts`` parts (1..max_parts, checked by the caller)."""
        now = self._clock()
        session = UploadSession(secrets.token_hex(16), call_id, dict(assistant), filename, parts, now, now + self.limits.session_ttl_s)
        folder = self.staging / session.slug
        folder.mkdir()
        _write_json(folder / "session.json", asdict(session))
        return session

    def part_urls(self, session: UploadSession, base_url: str) -> list[str]:
        """One pre-signed PUT URL per part, absolute on ``base_url``, valid for ``url_ttl_s``."""
        expires = int(self._clock() + self.limits.url_ttl_s)
        base = base_url.rstrip("/")
        return [f"{base}/api/v1/recording/parts/{session.slug}/{part}?expires={expires}&signature={self.signer.sign(session.slug, part, expires)}"
                for part in range(1, session.parts + 1)]

    def _session(self, slug: str) -> UploadSession:
        if not SLUG_PATTERN.fullmatch(slug):
            raise UploadError(404, "no upload with this slug (slugs are 32 hex digits): use the slug uploadRequest returned", "slug")
        try:
            data = json.loads((self.staging / slug / "session.json").read_text())
        except (FileNotFoundError, NotADirectoryError):
            raise UploadError(404, f"no upload with slug {slug!r} (unknown, or expired and deleted): start again with uploadRequest", "slug") from None
        session = UploadSession(**data)
        if session.expires_at <= self._clock():
            raise UploadError(404, f"the upload {slug!r} has expired: start again with uploadRequest", "slug")
        return session

    def _done(self, slug: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.staging / slug / "done.json").read_text())
        except FileNotFoundError:
            return None

    def _lock(self, slug: str) -> asyncio.Lock:
        return self._locks.setdefault(slug, asyncio.Lock())

    def _parts(self, slug: str) -> dict[int, tuple[str, Path]]:
        """The stored parts: number -> (md5 hex, path)."""
        found = {}
        for path in (self.staging / slug).glob("*.part"):
            number, _, md5 = path.stem.partition("-")
            found[int(number)] = (md5, path)
        return found

    # -- parts ------------------------------------------------------------------------------------------

    async def store_part(self, slug: str, part: int, expires: str | None, signature: str | None,
                         body: AsyncIterator[bytes], declared_bytes: int | None) -> str:
        """Check the URL, stream the part to disk within the caps, and return its MD5 (bare hex): the
        caller answers it quoted, as S3's ETag. A part sent again replaces the earlier one."""
        if SLUG_PATTERN.fullmatch(slug):
            self.signer.verify(slug, part, expires, signature, self._clock())
        else:
            raise UploadError(403, "the upload URL's signature does not match: PUT to a URL exactly as uploadRequest returned it", "signature")
        await self.cleanup_if_due()  # expired sessions free their disk here too: a full cap clears by itself
        session = self._session(slug)
        if self._done(slug) is not None:
            raise UploadError(409, f"the upload {slug!r} is already completed: parts can no longer change", "slug")
        if not 1 <= part <= session.parts:
            raise UploadError(404, f"the upload {slug!r} has parts 1 to {session.parts}, not {part}", "part")
        cap = self.limits.part_max_bytes
        if declared_bytes is not None and declared_bytes > cap:
            raise UploadError(413, f"part {part} is {declared_bytes} bytes; a part may be at most {cap} bytes: split the recording into more parts", "part")
        folder = self.staging / slug
        temporary = folder / f".{part:05d}-{secrets.token_hex(4)}.tmp"
        md5 = hashlib.md5(usedforsecurity=False)
        counted = 0
        committed = False
        try:
            handle = await asyncio.to_thread(open, temporary, "wb")
        except FileNotFoundError:
            raise UploadError(404, f"the upload {slug!r} has expired: start again with uploadRequest", "slug") from None
        try:
            buffered: list[bytes] = []
            buffered_bytes = 0
            async for chunk in body:
                if not chunk:
                    continue
                if counted + len(chunk) > cap:
                    raise UploadError(413, f"part {part} is larger than {cap} bytes, the most a part may be: split the recording into more parts", "part")
                if self.pending_bytes + len(chunk) > self.limits.pending_max_bytes:
                    raise UploadError(507, f"uploads not yet completed already use {self.pending_bytes} bytes of disk, the most allowed "
                                           f"({self.limits.pending_max_bytes}): complete or let expire earlier uploads, then PUT again", "part")
                counted += len(chunk)
                self.pending_bytes += len(chunk)
                buffered.append(chunk)
                buffered_bytes += len(chunk)
                if buffered_bytes >= WRITE_CHUNK_BYTES:
                    await asyncio.to_thread(_write_hashed, handle, md5, b"".join(buffered))
                    buffered, buffered_bytes = [], 0
            if buffered:
                await asyncio.to_thread(_write_hashed, handle, md5, b"".join(buffered))
            await asyncio.to_thread(handle.close)
            etag = md5.hexdigest()
            async with self._lock(slug):
                if not (folder / "session.json").exists() or self._done(slug) is not None:
                    raise UploadError(409, f"the upload {slug!r} was completed or deleted while part {part} arrived", "slug")
                earlier = self._parts(slug).get(part)
                final = folder / f"{part:05d}-{etag}.part"
                os.replace(temporary, final)
                committed = True
                if earlier is not None and earlier[1] != final:
                    self.pending_bytes -= earlier[1].stat().st_size
                    earlier[1].unlink(missing_ok=True)
                elif earlier is not None:  # the same bytes again: the file is replaced by its twin
                    self.pending_bytes -= counted
            return etag
        except BaseException:
            handle.close()
            if not committed:
                temporary.unlink(missing_ok=True)
                self.pending_bytes -= counted
            raise

    # -- completion -------------------------------------------------------------------------------------

    async def complete(self, slug: str, call_id: str, parts: list[tuple[int, str]]) -> StoredUpload:
        """Join ``parts`` ((number, etag) in any order; the numbers given, each once) in part order,
        check each ETag and that the whole is audio, and store it as a recording. A slug completed
        before answers what it stored then (``assembled_now`` False)."""
        if not SLUG_PATTERN.fullmatch(slug):
            raise UploadError(404, "no upload with this slug (slugs are 32 hex digits): use the slug uploadRequest returned", "slug")
        async with self._lock(slug):
            session = self._session(slug)
            if session.call_id != call_id:
                raise UploadError(409, f"the upload {slug!r} was requested for callId {session.call_id!r}, not {call_id!r}: "
                                       "complete it with the callId of its uploadRequest", "callId")
            done = self._done(slug)
            if done is not None:
                return StoredUpload(session, done["upload"], done["container"], done["size_bytes"], assembled_now=False)
            stored = self._parts(slug)
            ordered = self._check_parts(session, parts, stored)
            paths = [stored[number][1] for number, _ in ordered]
            upload, container, size_bytes = await asyncio.to_thread(self._assemble, slug, paths)
            _write_json(self.staging / slug / "done.json", {"upload": upload, "container": container, "size_bytes": size_bytes})
            freed = 0
            for _, path in stored.values():
                freed += path.stat().st_size
                path.unlink(missing_ok=True)
            self.pending_bytes -= freed
            logger.info("upload %s for call %s stored as %s (%d parts, %d bytes)", slug, call_id, upload, len(ordered), size_bytes)
            return StoredUpload(session, upload, container, size_bytes, assembled_now=True)

    @staticmethod
    def _check_parts(session: UploadSession, parts: list[tuple[int, str]], stored: dict[int, tuple[str, Path]]) -> list[tuple[int, str]]:
        if not parts:
            raise UploadError(400, "body/parts must have at least 1 item: list every part as {partnum, etag}", "parts")
        seen: set[int] = set()
        for index, (number, etag) in enumerate(parts):
            if not 1 <= number <= session.parts:
                raise UploadError(400, f"parts[{index}]: partnum {number} is not a part of this upload (it has parts 1 to {session.parts})", f"parts.{index}.partnum")
            if number in seen:
                raise UploadError(400, f"parts[{index}]: part {number} is listed twice; list each part once", f"parts.{index}.partnum")
            seen.add(number)
            if number not in stored:
                raise UploadError(400, f"parts[{index}]: part {number} was never uploaded: PUT it to its URL from uploadRequest first", f"parts.{index}.partnum")
            if normalize_etag(etag) != stored[number][0]:
                raise UploadError(400, f"parts[{index}]: the etag of part {number} does not match the part stored (its ETag is \"{stored[number][0]}\"): "
                                       "send the ETag header its PUT answered, or PUT the part again", f"parts.{index}.etag")
        missing = sorted(set(range(1, session.parts + 1)) - seen)
        if missing:  # a recording with a part left out would be analysed as if it were the call
            listed = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
            raise UploadError(400, f"parts: part(s) {listed} of {session.parts} missing; list every part of the upload (the number "
                                   "uploadRequest was given) with its ETag", "parts")
        return sorted(parts)

    def _assemble(self, slug: str, paths: list[Path]) -> tuple[str, str, int]:
        """Join the parts into the recordings folder and check the whole decodes as audio (blocking)."""
        folder = self.recordings_folder / UPLOADS_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".{slug}.tmp"
        try:
            with temporary.open("wb") as out:
                for path in paths:
                    with path.open("rb") as part:
                        shutil.copyfileobj(part, out, WRITE_CHUNK_BYTES)
            container = _check_audio(temporary)
            final = folder / f"{slug}.{EXTENSIONS[container]}"
            os.replace(temporary, final)
            return f"{UPLOADS_FOLDER}/{final.name}", container, final.stat().st_size
        finally:
            temporary.unlink(missing_ok=True)

    # -- cleanup ----------------------------------------------------------------------------------------

    async def cleanup_if_due(self) -> int:
        """``cleanup`` at most once per ``cleanup_interval_s``."""
        now = time.monotonic()
        if now - self._last_cleanup < self.limits.cleanup_interval_s:
            return 0
        self._last_cleanup = now
        return await self.cleanup()

    async def cleanup(self) -> int:
        """Delete the sessions (parts, done markers) past their ``expires_at``; how many were deleted.
        The recordings of completed uploads stay: they belong to their calls."""
        expired = await asyncio.to_thread(self._expired_slugs, self._clock())
        for slug in expired:
            async with self._lock(slug):
                freed = await asyncio.to_thread(_remove_tree, self.staging / slug)
                self.pending_bytes -= freed
            self._locks.pop(slug, None)
        if expired:
            logger.info("deleted %d expired upload session(s)", len(expired))
        return len(expired)

    def _expired_slugs(self, now_s: float) -> list[str]:
        expired = []
        for folder in self.staging.iterdir():
            if not folder.is_dir():
                continue
            try:
                expires_at = float(json.loads((folder / "session.json").read_text())["expires_at"])
            except (OSError, ValueError, KeyError, TypeError):  # a session a crash left half-made
                expires_at = folder.stat().st_mtime + self.limits.session_ttl_s
            if expires_at <= now_s:
                expired.append(folder.name)
        return expired


def _write_hashed(handle: Any, md5: Any, data: bytes) -> None:
    md5.update(data)
    handle.write(data)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data))
    os.replace(temporary, path)


def _remove_tree(folder: Path) -> int:
    """Delete ``folder``; the bytes of its parts (which counted as pending)."""
    freed = 0
    for path in folder.glob("*.part"):
        with contextlib.suppress(OSError):
            freed += path.stat().st_size
    shutil.rmtree(folder, ignore_errors=True)
    return freed


def _check_audio(path: Path) -> str:
    """The container of the file at ``path`` when it decodes as audio with at least one frame; else
    UploadError 422, in words that never quote the file's bytes."""
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    container = sniff_audio(head)
    if container is None:
        raise UploadError(422, "the uploaded recording is not audio (no WAV, FLAC, OGG, MP3, AIFF, AU or CAF data at its start): "
                               "upload the recording's file as it is, split into parts in order", "parts")
    try:
        with quiet_c_stderr() if container_magic(head) is None else contextlib.nullcontext(), soundfile.SoundFile(path) as audio:
            frames = audio.frames
            audio.read(min(frames, 4096), dtype="float32")
    except (soundfile.LibsndfileError, RuntimeError, ValueError, OSError) as error:
        why = error.error_string if isinstance(error, soundfile.LibsndfileError) else type(error).__name__
        raise UploadError(422, f"the uploaded recording looks like {container} but does not decode ({why}): upload the whole file, every part in order", "parts") from error
    if frames <= 0:
        raise UploadError(422, f"the uploaded recording is {container} with no audio in it (0 frames)", "parts")
    return container
