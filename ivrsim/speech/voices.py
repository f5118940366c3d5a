"""The voice catalog: Canary voice ids mapped to espeak-ng voices, read from TOML files in ``voices/``.

The catalog ships in the repository's ``voices/catalog.toml``; users add or override voices with more
``*.toml`` files in that folder, or in the folder ``IVRSIM_VOICES_DIR`` names (read after it).
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ivrsim.exceptions import UnknownVoiceError

#: The voice a ``tts`` object without ``voice`` speaks with.
DEFAULT_VOICE_ID = "en-US-Neural2-F"
#: Where the shipped catalog lives (the repository's ``voices/`` folder).
BUILTIN_VOICES_DIR = Path(__file__).resolve().parents[2] / "voices"

_FIELDS = ("language", "language_name", "gender", "type", "espeak")


@dataclass(frozen=True)
class Voice:
    """One catalog entry. ``espeak`` is the espeak-ng voice and variant, as ``espeak-ng -v`` takes it."""

    id: str
    language: str
    language_name: str
    gender: str
    type: str
    espeak: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


class VoiceCatalog:
    """Voices by id, from TOML files read in order (a later file's entry replaces an earlier one)."""

    def __init__(self, voices: Iterable[Voice]) -> None:
        self._voices = {voice.id: voice for voice in voices}

    @classmethod
    def load(cls, folders: Iterable[Path] | None = None) -> VoiceCatalog:
        """Read every ``*.toml`` in ``folders`` (default: the built-in folder, then ``IVRSIM_VOICES_DIR``)."""
        if folders is None:
            folders = [BUILTIN_VOICES_DIR]
            extra = os.environ.get("IVRSIM_VOICES_DIR")
            if extra:
                folders.append(Path(extra))
        voices: dict[str, Voice] = {}
        for folder in folders:
            if not folder.is_dir():
                raise ValueError(f"voice catalog folder {folder} does not exist")
            for path in sorted(folder.glob("*.toml")):
                for voice in _read_catalog_file(path):
                    voices[voice.id] = voice
        return cls(voices.values())

    def __iter__(self) -> Iterator[Voice]:
        return iter(sorted(self._voices.values(), key=lambda v: (v.type != "Neural", v.id)))

    def __len__(self) -> int:
        return len(self._voices)

    def __contains__(self, voice_id: object) -> bool:
        return voice_id in self._voices

    def get(self, voice_id: str | None) -> Voice:
        """The voice ``voice_id`` (the default voice for None); UnknownVoiceError suggests close ids."""
        key = DEFAULT_VOICE_ID if voice_id is None else voice_id
        voice = self._voices.get(key)
        if voice is None:
            lowered = {v.lower(): v for v in self._voices}
            if key.lower() in lowered:
                return self._voices[lowered[key.lower()]]
            close = difflib.get_close_matches(key.lower(), list(lowered), n=3, cutoff=0.6)
            raise UnknownVoiceError(key, [lowered[c] for c in close])
        return voice

    @property
    def languages(self) -> list[str]:
        return sorted({v.language for v in self._voices.values()})


def _read_catalog_file(path: Path) -> list[Voice]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"voice catalog {path}: {error}") from error
    voices = []
    for voice_id, entry in document.get("voice", {}).items():
        missing = [f for f in _FIELDS if not isinstance(entry.get(f), str) or not entry.get(f)]
        if missing:
            raise ValueError(f"voice catalog {path}: voice {voice_id!r} lacks {', '.join(missing)}")
        voices.append(Voice(id=voice_id, **{f: entry[f] for f in _FIELDS}))
    return voices
