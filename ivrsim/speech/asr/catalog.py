"""The official Vosk models ivrsim knows by name (alphacephei.com/vosk/models), so that `ivrsim models pull NAME`
can fetch one and an error can say which one to fetch for a language.

Sizes are the zip sizes as the models page publishes them ("40M", "1.8G"), in bytes: approximate, used to show
what a download costs and to bound it, never to check it (the server's Content-Length does that).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import asdict, dataclass
from typing import Any

#: Where the official models are served; ``IVRSIM_MODELS_URL`` or ``--url`` replace it (a mirror, a test server).
DEFAULT_MODELS_URL = "https://alphacephei.com/vosk/models"
#: The environment variable that overrides ``DEFAULT_MODELS_URL``.
MODELS_URL_ENV = "IVRSIM_MODELS_URL"

_MIB = 1024 * 1024
_GIB = 1024 * _MIB


@dataclass(frozen=True)
class KnownModel:
    """An official Vosk model: its name (the zip's and the folder's), BCP 47-ish language tag in lower case
    (``en-us``, ``zh``), published zip size and official download URL."""

    name: str
    language: str
    size_bytes: int
    url: str

    def url_at(self, base_url: str | None = None) -> str:
        """The zip's URL under ``base_url`` (default: ``models_base_url()``)."""
        return f"{models_base_url(base_url)}/{self.name}.zip"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _known(name: str, language: str, size_bytes: float) -> KnownModel:
    return KnownModel(name=name, language=language, size_bytes=int(size_bytes), url=f"{DEFAULT_MODELS_URL}/{name}.zip")


#: The catalog: every small model of the languages a telephone IVR is most often built in, plus the two
#: bigger English models worth their size (lgraph: a good English model that still fits a laptop).
KNOWN_MODELS: tuple[KnownModel, ...] = (
    _known("vosk-model-small-en-us-0.15", "en-us", 40 * _MIB),
    _known("vosk-model-en-us-0.22-lgraph", "en-us", 128 * _MIB),
    _known("vosk-model-en-us-0.22", "en-us", 1.8 * _GIB),
    _known("vosk-model-small-en-in-0.4", "en-in", 36 * _MIB),
    _known("vosk-model-small-cn-0.22", "zh", 42 * _MIB),
    _known("vosk-model-small-ru-0.22", "ru", 45 * _MIB),
    _known("vosk-model-small-fr-0.22", "fr", 41 * _MIB),
    _known("vosk-model-small-de-0.15", "de", 45 * _MIB),
    _known("vosk-model-small-es-0.42", "es", 39 * _MIB),
    _known("vosk-model-small-pt-0.3", "pt", 31 * _MIB),
    _known("vosk-model-small-it-0.22", "it", 48 * _MIB),
    _known("vosk-model-small-nl-0.22", "nl", 39 * _MIB),
    _known("vosk-model-small-ja-0.22", "ja", 48 * _MIB),
    _known("vosk-model-small-ko-0.22", "ko", 82 * _MIB),
    _known("vosk-model-small-hi-0.22", "hi", 42 * _MIB),
    _known("vosk-model-small-tr-0.3", "tr", 35 * _MIB),
    _known("vosk-model-small-pl-0.22", "pl", 50 * _MIB),
    _known("vosk-model-small-vn-0.4", "vi", 32 * _MIB),
    _known("vosk-model-small-fa-0.42", "fa", 53 * _MIB),
    _known("vosk-model-small-ca-0.4", "ca", 42 * _MIB),
    _known("vosk-model-small-uk-v3-nano", "uk", 73 * _MIB),
    _known("vosk-model-small-uk-v3-small", "uk", 133 * _MIB),
)

#: Language codes Vosk's model names use that are not the standard tags.
_ALIASES = {"cn": "zh", "vn": "vi", "ua": "uk"}
#: The region a bare language tag means when the catalog has several (``en`` -> ``en-us``).
_DEFAULT_REGION = {"en": "en-us"}


def models_base_url(override: str | None = None) -> str:
    """The base URL models are downloaded from: ``override``, else ``IVRSIM_MODELS_URL``, else the official one."""
    base = override or os.environ.get(MODELS_URL_ENV) or DEFAULT_MODELS_URL
    return base.rstrip("/")


def known_model(name: str) -> KnownModel | None:
    """The catalog entry named ``name`` (exactly), if any."""
    for model in KNOWN_MODELS:
        if model.name == name:
            return model
    return None


def close_names(name: str, count: int = 3) -> list[str]:
    """Catalog names that look like ``name``: for "did you mean" in errors."""
    return difflib.get_close_matches(name, [m.name for m in KNOWN_MODELS], n=count, cutoff=0.6)


def _tag(language: str) -> str:
    tag = language.strip().replace("_", "-").lower()
    primary, _, region = tag.partition("-")
    primary = _ALIASES.get(primary, primary)
    return f"{primary}-{region}" if region else primary


def models_for_language(language: str) -> list[KnownModel]:
    """Known models for a language tag (``es``, ``es-ES``, ``en-US``, ``zh-CN``), best first: the exact tag,
    else the same language (its default region first), smallest first within each."""
    tag = _tag(language)
    if not tag:
        return []
    primary = tag.split("-", 1)[0]
    exact = [m for m in KNOWN_MODELS if m.language == tag]
    if exact:
        return sorted(exact, key=lambda m: m.size_bytes)
    preferred = _DEFAULT_REGION.get(primary, primary)
    same = [m for m in KNOWN_MODELS if m.language.split("-", 1)[0] == primary]
    return sorted(same, key=lambda m: (m.language != preferred, m.size_bytes))


def suggest_model(language: str) -> str | None:
    """The name of the smallest known model for ``language`` (``es`` -> ``vosk-model-small-es-0.42``), or None."""
    models = models_for_language(language)
    return models[0].name if models else None
