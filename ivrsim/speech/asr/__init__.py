"""Offline speech recognition: Vosk when a model is installed, pocketsphinx's bundled English otherwise;
a streaming VAD decides what is decoded. See ``base`` for the interface and ``engines`` for the choice."""

from ivrsim.speech.asr.base import (
    AsrError,
    EngineInfo,
    NoSpeechModelError,
    Recognition,
    RecognizerStream,
    Segment,
    SpeechEngine,
    SpeechModelError,
    Word,
)
from ivrsim.speech.asr.engines import (
    InstalledModel,
    SpeechEngines,
    default_models_dirs,
    installed_models,
    language_of_voice,
)
from ivrsim.speech.asr.transcribe import Transcript, transcribe_file, transcribe_signal
from ivrsim.speech.asr.vad import (
    VadEvent,
    VadSettings,
    VoiceActivityDetector,
    speech_segments,
)

__all__ = [
    "AsrError",
    "EngineInfo",
    "InstalledModel",
    "NoSpeechModelError",
    "Recognition",
    "RecognizerStream",
    "Segment",
    "SpeechEngine",
    "SpeechEngines",
    "SpeechModelError",
    "Transcript",
    "VadEvent",
    "VadSettings",
    "VoiceActivityDetector",
    "Word",
    "default_models_dirs",
    "installed_models",
    "language_of_voice",
    "speech_segments",
    "transcribe_file",
    "transcribe_signal",
]
