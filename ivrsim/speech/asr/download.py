"""Installing and checking Vosk models: `ivrsim models pull` and `ivrsim models verify`.

A pull streams the official zip to a temporary file beside the target, checks it (the size the server announced,
a bound on the size, the archive's CRCs, no member that would land outside the folder, the Vosk layout), unpacks
it into a temporary folder beside the target and renames that into place: a failed pull leaves nothing behind,
and a model that is already there is replaced only when asked to.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from ivrsim.speech.asr.base import AsrError, SpeechModelError
from ivrsim.speech.asr.catalog import (
    KnownModel,
    close_names,
    known_model,
)
from ivrsim.speech.asr.engines import (
    MODEL_INFO_FILE,
    folder_size_bytes,
    installed_models,
    is_vosk_model_dir,
)

logger = logging.getLogger(__name__)

#: No model download may be larger than this, whatever the catalog says.
MAX_MODEL_BYTES = 4 * 1024**3
#: A download may be at most this many times the catalog's published size (sizes are approximate).
SIZE_SLACK = 3
#: An archive may unpack to at most this many times its own size (Vosk models barely compress): a zip bomb stops here.
MAX_UNPACK_RATIO = 10
#: Seconds to open the connection: with no internet this is how long a pull takes to fail.
CONNECT_TIMEOUT_S = 5.0
#: Seconds the server may go quiet in the middle of a download.
READ_TIMEOUT_S = 60.0
_CHUNK_BYTES = 1024 * 1024
_BY_HAND = "download the zip by hand from https://alphacephei.com/vosk/models and unzip it into the models folder (see models/README.md)"

#: ``progress(done_bytes, total_bytes)``; ``total_bytes`` is None when the server did not say.
ProgressCallback = Callable[[int, "int | None"], None]


class UnknownModelError(AsrError):
    """A model name the catalog does not have (a usage error)."""

    code = "unknown_model"

    def __init__(self, name: str) -> None:
        suggestions = close_names(name)
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"unknown model {name!r}{hint} (`ivrsim models list` shows the known ones; for another model, {_BY_HAND})")
        self.name = name


class ModelExistsError(AsrError):
    """The model is already installed and the pull was not forced: nothing was changed."""

    code = "model_exists"


class ModelNotInstalledError(AsrError):
    """No installed model has that name."""

    code = "model_not_installed"


class ModelDownloadError(AsrError):
    """The zip could not be fetched whole: no connection, an HTTP error, a truncated or oversized body."""

    code = "model_download_error"


class ModelArchiveError(SpeechModelError):
    """The zip was fetched but is not a usable Vosk model: corrupt, unsafe or the wrong layout."""

    code = "model_archive_error"


@dataclass(frozen=True)
class PullResult:
    """A model installed by ``pull``: where, from which URL, how many bytes were downloaded and unpacked."""

    name: str
    path: Path
    url: str
    download_bytes: int
    size_bytes: int
    replaced: bool

    def as_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["path"] = str(self.path)
        return document


@dataclass(frozen=True)
class VerifyResult:
    """A model folder that passed ``verify``: its files were all read; ``loaded`` when Vosk loaded it."""

    name: str
    path: Path
    files: int
    size_bytes: int
    loaded: bool
    load_s: float | None

    def as_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["path"] = str(self.path)
        return document


def default_max_bytes(model: KnownModel) -> int:
    """The most a download of ``model`` may weigh: a few times its published size, never more than 4 GiB."""
    return min(SIZE_SLACK * model.size_bytes, MAX_MODEL_BYTES)


def pull(
    name: str,
    models_dir: Path,
    base_url: str | None = None,
    progress: ProgressCallback | None = None,
    *,
    force: bool = False,
    timeout_s: float = READ_TIMEOUT_S,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    max_bytes: int | None = None,
) -> PullResult:
    """Download the known model ``name`` into ``models_dir/name``; see the module's docstring for the checks.

    Raises UnknownModelError (not in the catalog), ModelExistsError (installed, not ``force``),
    ModelDownloadError (network, HTTP, size) or ModelArchiveError (corrupt, unsafe, not a Vosk model)."""
    model = known_model(name)
    if model is None:
        raise UnknownModelError(name)
    models_dir = Path(models_dir)
    target = models_dir / model.name
    if target.exists() and not force:
        raise ModelExistsError(f"{target} already exists; nothing was changed (`ivrsim models pull {name} --force` replaces it, "
                               f"`ivrsim models verify {name}` checks it)")
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ModelDownloadError(f"cannot create the models folder {models_dir}: {error.strerror or error}; choose another with --dir") from error
    url = model.url_at(base_url)
    limit = default_max_bytes(model) if max_bytes is None else max_bytes
    with _scratch(models_dir, model.name) as (archive, unpack_dir):
        download_bytes = _download(url, archive, limit, progress, timeout_s, connect_timeout_s)
        root = _unpack(archive, unpack_dir, url, max_unpacked_bytes=MAX_UNPACK_RATIO * max(download_bytes, 1))
        _label(root, model)
        replaced = _install(root, target, force)
    return PullResult(name=model.name, path=target.resolve(), url=url, download_bytes=download_bytes,
                      size_bytes=folder_size_bytes(target), replaced=replaced)


@contextlib.contextmanager
def _scratch(models_dir: Path, name: str) -> Iterator[tuple[Path, Path]]:
    """A temporary file and folder beside the target (the same file system, so the final rename is atomic);
    both are gone when the ``with`` ends, whatever happened."""
    handle, archive_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".zip.part", dir=models_dir)
    os.close(handle)
    unpack_dir = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".unpack", dir=models_dir))
    try:
        yield Path(archive_name), unpack_dir
    finally:
        with contextlib.suppress(OSError):
            os.unlink(archive_name)
        shutil.rmtree(unpack_dir, ignore_errors=True)


def _download(url: str, archive: Path, max_bytes: int, progress: ProgressCallback | None, timeout_s: float, connect_timeout_s: float) -> int:
    """Stream ``url`` into ``archive``; returns the bytes written. The body must be exactly the announced
    Content-Length (when there is one) and at most ``max_bytes``."""
    timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
    done = 0
    try:
        with httpx.Client(timeout=timeout, follow_redirects=True, headers={"Accept-Encoding": "identity"}) as client, \
                client.stream("GET", url) as response:
            if response.status_code != 200:
                hint = "the server has no such file; check the name and --url / IVRSIM_MODELS_URL" if response.status_code == 404 else "try again later"
                raise ModelDownloadError(f"{url}: the server answered HTTP {response.status_code}; {hint}, or {_BY_HAND}")
            total = _content_length(response)
            if total is not None and total > max_bytes:
                raise ModelDownloadError(f"{url}: the server announces {total} bytes, more than the {max_bytes} a model may weigh; "
                                         "check --url / IVRSIM_MODELS_URL")
            if progress is not None:
                progress(0, total)
            with archive.open("wb") as file:
                for chunk in response.iter_raw(_CHUNK_BYTES):
                    done += len(chunk)
                    if done > max_bytes:
                        raise ModelDownloadError(f"{url}: more than {max_bytes} bytes, more than a model may weigh; stopped "
                                                 "(check --url / IVRSIM_MODELS_URL)")
                    file.write(chunk)
                    if progress is not None:
                        progress(done, total)
            if total is not None and done != total:
                raise ModelDownloadError(f"{url}: the download ended after {done} of {total} bytes; run the command again, or {_BY_HAND}")
    except httpx.RemoteProtocolError as error:
        raise ModelDownloadError(f"{url}: the connection broke after {done} bytes ({error}); the download is incomplete and was "
                                 f"discarded; run the command again, or {_BY_HAND}") from error
    except httpx.TimeoutException as error:
        what = "could not connect" if isinstance(error, httpx.ConnectTimeout) else f"the server went quiet after {done} bytes"
        raise ModelDownloadError(f"{url}: {what} (timed out); without internet, {_BY_HAND}") from error
    except httpx.HTTPError as error:
        raise ModelDownloadError(f"{url}: cannot download ({error or type(error).__name__}); without internet, {_BY_HAND}") from error
    except OSError as error:
        raise ModelDownloadError(f"cannot write {archive}: {error.strerror or error}; free some space or choose another --dir") from error
    return done


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        raise ModelDownloadError(f"{response.url}: the server sent an invalid Content-Length; try again later, or {_BY_HAND}") from None
    if length < 0:
        raise ModelDownloadError(f"{response.url}: the server sent an invalid Content-Length; try again later, or {_BY_HAND}")
    return length


def _unsafe_member(info: zipfile.ZipInfo) -> str | None:
    """Why a member may not be unpacked (absolute, climbing out with ``..``, a link), or None."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "a path with '..'"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    return None


def _unpack(archive: Path, unpack_dir: Path, url: str, max_unpacked_bytes: int) -> Path:
    """Check and unpack ``archive`` into ``unpack_dir``; returns the model's folder inside it."""
    try:
        with zipfile.ZipFile(archive) as zip_file:
            members = zip_file.infolist()
            if not members:
                raise ModelArchiveError(f"{url}: the zip archive is empty; {_BY_HAND}")
            for info in members:
                problem = _unsafe_member(info)
                if problem is not None:
                    raise ModelArchiveError(f"{url}: the archive holds {problem} ({info.filename!r}), refused: nothing was unpacked; "
                                            f"check --url / IVRSIM_MODELS_URL")
            unpacked = sum(info.file_size for info in members)
            if unpacked > max_unpacked_bytes:
                raise ModelArchiveError(f"{url}: the archive would unpack to {unpacked} bytes, too many for its size; refused")
            bad = zip_file.testzip()
            if bad is not None:
                raise ModelArchiveError(f"{url}: the archive is corrupt (bad CRC in {bad!r}); run the command again, or {_BY_HAND}")
            zip_file.extractall(unpack_dir)
    except zipfile.BadZipFile as error:
        raise ModelArchiveError(f"{url}: not a valid zip archive ({error}); run the command again, or {_BY_HAND}") from error
    except (OSError, EOFError, zlib.error) as error:
        if isinstance(error, OSError) and error.errno is not None:
            raise ModelArchiveError(f"cannot unpack into {unpack_dir}: {error.strerror or error}; free some space or choose another --dir") from error
        raise ModelArchiveError(f"{url}: the archive is corrupt ({error}); run the command again, or {_BY_HAND}") from error
    children = [child for child in unpack_dir.iterdir()]
    if is_vosk_model_dir(unpack_dir):
        return unpack_dir
    if len(children) == 1 and is_vosk_model_dir(children[0]):
        return children[0]
    raise ModelArchiveError(f"{url}: the archive holds no Vosk model (a folder with am/final.mdl and conf/); {_BY_HAND}")


def _label(root: Path, model: KnownModel) -> None:
    """State the model's language in the folder (``ivrsim-model.json``, read by the engines): Vosk's names
    say ``cn`` and ``vn`` where a call's language says ``zh`` and ``vi``."""
    info = root / MODEL_INFO_FILE
    if not info.exists():
        info.write_text(json.dumps({"language": model.language, "name": model.name, "url": model.url}) + "\n", encoding="utf-8")


def _install(root: Path, target: Path, force: bool) -> bool:
    """Rename ``root`` to ``target``; with ``force`` an existing ``target`` is moved aside first and deleted
    only once the new one is in place (put back if that fails). Returns whether a model was replaced."""
    old: Path | None = None
    if target.exists():
        if not force:
            raise ModelExistsError(f"{target} appeared during the download; nothing was changed (--force replaces it)")
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.rmdir(old)
        os.rename(target, old)
    try:
        os.rename(root, target)
    except OSError as error:
        if old is not None:
            with contextlib.suppress(OSError):
                os.rename(old, target)
        if error.errno in (39, 17):  # ENOTEMPTY / EEXIST: another pull won the race
            raise ModelExistsError(f"{target} appeared during the download; nothing was changed") from error
        raise ModelArchiveError(f"cannot move the model into {target}: {error.strerror or error}") from error
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return old is not None


def find_installed(name: str, models_dirs: Sequence[Path] | None = None) -> Path | None:
    """The folder of the installed model called ``name`` (as `ivrsim models list` names it), or None."""
    for model in installed_models(models_dirs):
        if model.name == name:
            return model.path
    return None


def resolve_model(path_or_name: str, models_dirs: Sequence[Path] | None = None) -> tuple[str, Path]:
    """A model's name and folder from an installed model's name or a path. Raises ModelNotInstalledError (a
    known model that is not installed, or a path that does not exist) or UnknownModelError (neither)."""
    installed = find_installed(path_or_name, models_dirs)
    if installed is not None:
        return path_or_name, installed
    candidate = Path(path_or_name).expanduser()
    if candidate.exists():
        return candidate.resolve().name, candidate
    if known_model(path_or_name) is not None:
        raise ModelNotInstalledError(f"model {path_or_name!r} is not installed (`ivrsim models pull {path_or_name}` installs it)")
    if os.sep in path_or_name or path_or_name.startswith("."):
        raise ModelNotInstalledError(f"{path_or_name}: no such folder")
    raise UnknownModelError(path_or_name)


def verify(path_or_name: str | Path, quick: bool = False, models_dirs: Sequence[Path] | None = None) -> VerifyResult:
    """Check a model folder: the Vosk layout, every file readable to the end, and (unless ``quick``) that Vosk
    loads it, in this process. Raises SpeechModelError naming the folder and the fix."""
    if isinstance(path_or_name, Path):
        name, path = path_or_name.name, path_or_name
    else:
        name, path = resolve_model(path_or_name, models_dirs)
    fix = f"re-download it (`ivrsim models pull {name} --force`)" if known_model(name) else "re-install it"
    fix += f", or {_BY_HAND}"
    if not path.is_dir():
        raise SpeechModelError(f"{path}: not a folder; a Vosk model is a folder with am/final.mdl and conf/")
    if not is_vosk_model_dir(path):
        raise SpeechModelError(f"{path}: not a Vosk model (no am/final.mdl or no conf/ folder); {fix}")
    files = 0
    size_bytes = 0
    for root, _dirs, names in os.walk(path):
        for file_name in names:
            file_path = Path(root) / file_name
            try:
                with file_path.open("rb") as file:
                    while chunk := file.read(_CHUNK_BYTES):
                        size_bytes += len(chunk)
            except OSError as error:
                raise SpeechModelError(f"{file_path}: cannot be read ({error.strerror or error}); {fix}") from error
            files += 1
    acoustic = path / "am" / "final.mdl" if (path / "am" / "final.mdl").is_file() else path / "final.mdl"
    if acoustic.stat().st_size == 0:
        raise SpeechModelError(f"{acoustic}: empty; {fix}")
    load_s: float | None = None
    if not quick:
        load_s = _load(path, fix)
    return VerifyResult(name=name, path=path.resolve(), files=files, size_bytes=size_bytes, loaded=not quick, load_s=load_s)


def _load(path: Path, fix: str) -> float:
    """Load the model with Vosk and let it go; Kaldi's own log (it writes to fd 2) is kept out of the terminal
    and its last error line goes into the message."""
    try:
        import vosk  # type: ignore[import-untyped]
    except ImportError as error:
        raise SpeechModelError(f"{path}: cannot load it: the vosk package is not installed (pip install vosk), or use --quick") from error
    started = time.perf_counter()
    with _native_stderr_captured() as captured:
        try:
            model = vosk.Model(str(path))
        except Exception as error:  # noqa: BLE001 (vosk raises a bare Exception("Failed to create a model"))
            failure: Exception | None = error
        else:
            failure = None
            del model
    if failure is not None:
        detail = _last_error_line(captured())
        raise SpeechModelError(f"{path}: Vosk could not load it ({detail or failure}); {fix}") from failure
    return time.perf_counter() - started


@contextlib.contextmanager
def _native_stderr_captured() -> Iterator[Callable[[], str]]:
    """Send file descriptor 2 to a temporary file for the ``with``; yields a function returning what was written."""
    text = ""
    with tempfile.TemporaryFile() as sink:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to capture
            yield lambda: ""
            return
        try:
            os.dup2(sink.fileno(), 2)
            yield lambda: text
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read()[-65536:].decode("utf-8", "replace")


def _last_error_line(log: str) -> str:
    for line in reversed(log.splitlines()):
        if line.startswith("ERROR"):
            _, _, message = line.partition(") ")
            return message.strip() or line.strip()
    return ""
