"""Vosk (Kaldi) speech recognition: the engine of choice when a model for the language is installed.

A model is seconds and hundreds of MB to load, so each model folder is loaded once per process (under a
lock) and shared by every stream; each utterance gets its own ``KaldiRecognizer`` (cheap). With hints and a
model that has ``HCLr.fst`` + ``Gr.fst``, the recognizer runs in grammar mode: only those phrases, plus
``[unk]`` for anything else.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ivrsim.speech.asr.base import EngineInfo, Recognition, SpeechModelError, Word
from ivrsim.speech.asr.gated import GatedStream, mono_float32
from ivrsim.speech.asr.phrases import split_known, unique_phrases

logger = logging.getLogger(__name__)


class _ModelCache:
    """Loaded ``vosk.Model``s by resolved folder: one per process, shared across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[Path, Any] = {}
        self.loads = 0

    def get(self, path: Path) -> Any:
        key = path.resolve()
        with self._lock:
            model = self._models.get(key)
            if model is None:
                model = _load(key)
                self._models[key] = model
                self.loads += 1
            return model


def _load(path: Path) -> Any:
    import vosk

    vosk.SetLogLevel(-1)
    if not path.is_dir():
        raise SpeechModelError(
            f"Vosk model folder {path} does not exist: run `ivrsim models pull NAME` or point --model / IVRSIM_VOSK_MODEL at a model folder"
        )
    logger.info("loading Vosk model %s", path)
    try:
        return vosk.Model(str(path))
    except Exception as error:  # vosk raises a bare Exception on a bad folder
        raise SpeechModelError(
            f"Vosk model folder {path} could not be loaded ({error}): it is incomplete or corrupt; "
            "download it again with `ivrsim models pull NAME` (or `ivrsim models verify NAME`)"
        ) from error


#: The process's loaded models (the one piece of process-wide state: a model is shared by every call).
MODELS = _ModelCache()


def supports_grammar(path: Path) -> bool:
    """Grammar mode needs the model's ``HCLr.fst`` and ``Gr.fst`` (in ``graph/`` or the folder itself)."""
    return any((folder / "HCLr.fst").is_file() and (folder / "Gr.fst").is_file() for folder in (path / "graph", path))


def _pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(mono_float32(samples), -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def _words(result: dict[str, Any]) -> list[Word]:
    return [
        Word(str(w["word"]), float(w["start"]), float(w["end"]), float(min(1.0, max(0.0, w.get("conf", 0.0)))))
        for w in result.get("result", [])
        if w.get("word") and w["word"] != "[unk]"
    ]


class _VoskUtterance:
    """One utterance on one ``KaldiRecognizer``; Vosk's own endpointer may split it, and nothing is lost."""

    def __init__(self, model: Any, rate_hz: int, grammar: str | None) -> None:
        import vosk

        self._recognizer = vosk.KaldiRecognizer(model, rate_hz, grammar) if grammar else vosk.KaldiRecognizer(model, rate_hz)
        self._recognizer.SetWords(True)
        self._done: list[Word] = []

    def accept(self, samples: np.ndarray) -> None:
        if self._recognizer.AcceptWaveform(_pcm16(samples)):
            self._done.extend(_words(json.loads(self._recognizer.Result())))

    def partial(self) -> str:
        text = str(json.loads(self._recognizer.PartialResult()).get("partial", ""))
        text = " ".join(w for w in text.split() if w != "[unk]")
        return " ".join([w.text for w in self._done] + ([text] if text else []))

    def final(self) -> list[Word]:
        return self._done + _words(json.loads(self._recognizer.FinalResult()))

    def close(self) -> None:
        self._recognizer = None


class VoskEngine:
    """A ``SpeechEngine`` over one Vosk model folder."""

    def __init__(self, path: Path, language: str, name: str | None = None, cache: _ModelCache | None = None) -> None:
        self.path = Path(path)
        self.info = EngineInfo("vosk", name or self.path.name, language)
        self.model = (cache or MODELS).get(self.path)
        self.grammar_supported = supports_grammar(self.path)

    def _known(self, word: str) -> bool:
        return int(self.model.vosk_model_find_word(word)) >= 0

    def grammar(self, hints: Sequence[str] | None) -> str | None:
        """The JSON phrase list for grammar mode, or None (no hints, or a model without grammar support)."""
        if not hints:
            return None
        if not self.grammar_supported:
            logger.info("Vosk model %s has no HCLr.fst/Gr.fst: hints ignored, free transcription", self.info.model)
            return None
        phrases, dropped = split_known(unique_phrases(hints, english_digits=self.info.language.startswith("en")), self._known)
        if dropped:
            logger.info("hints: words not in Vosk model %s dropped: %s", self.info.model, ", ".join(dropped))
        if not phrases:
            logger.info("hints: no hint word is in Vosk model %s: free transcription", self.info.model)
            return None
        entries = [" ".join(p) for p in phrases]
        if self._known("[unk]"):
            entries.append("[unk]")
        return json.dumps(entries, ensure_ascii=False)

    def stream(
        self, rate_hz: int, hints: Sequence[str] | None = None, end_silence_s: float = 0.8, partials: bool = True, repeat: bool = False
    ) -> GatedStream:
        """A VAD-gated stream; ``partials=False`` skips partial results (whole-signal transcription).
        ``repeat`` changes nothing: a Vosk grammar is a list of phrases any sequence of which is heard."""
        grammar = self.grammar(hints)
        return GatedStream(self.info, rate_hz, lambda: _VoskUtterance(self.model, int(rate_hz), grammar), end_silence_s, partials=partials)

    def transcribe(self, samples: np.ndarray, rate_hz: int, hints: Sequence[str] | None = None, repeat: bool = False) -> list[Recognition]:
        stream = self.stream(rate_hz, hints, partials=False)
        results = stream.accept(samples) + stream.finish()
        return [r for r in results if r.final]
