"""Exceptions raised by ivrsim, as one tree; each message names the input and the fix.

    IvrsimError
    ├── InvalidRequestError        a call request the engine cannot carry out; ``field`` names the part
    ├── MediaError                 audio that cannot be used
    │   ├── AudioFileError         a file that is missing, unreadable, empty or not audio
    │   └── AudioUrlError          an audio_url that cannot be fetched or decoded
    │       ├── UrlNotAllowedError     scheme, host or local path outside what is allowed
    │       ├── UrlUnreachableError    connection refused, DNS failure, timeout, too many redirects
    │       ├── UrlStatusError         the server answered with an HTTP error status
    │       ├── AudioTooLargeError     larger than the configured cap
    │       └── NotAudioError          the content is not audio libsndfile can decode
    └── SpeechError                text to speech that cannot be rendered
        ├── UnknownVoiceError      a voice id the catalog does not have
        ├── SsmlError              SSML that does not parse; carries line and column
        ├── TtsSettingError        speed or pitch out of range
        └── TtsEngineError         the TTS engine failed

Errors from other libraries (libsndfile, httpx, xml, pyttsx3) are translated into the most specific of
these at the boundary where they occur, raised ``from`` the original. ``code`` is a stable machine-readable
name for each, used by the HTTP layer's error shape.
"""

from __future__ import annotations


class IvrsimError(Exception):
    """Base of every error ivrsim raises on purpose."""

    code = "ivrsim_error"


class InvalidRequestError(IvrsimError):
    """A call request the engine cannot carry out; ``field`` names the offending part."""

    code = "invalid_parameter"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class MediaError(IvrsimError):
    """Audio that cannot be used."""

    code = "media_error"


class AudioFileError(MediaError):
    """An audio file that is missing, unreadable, empty or not audio; ``path`` names it."""

    code = "audio_file_error"

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class AudioUrlError(MediaError):
    """An ``audio_url`` that cannot be fetched or decoded; ``url`` names it."""

    code = "audio_url_error"

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(f"audio_url {url}: {problem}")
        self.url = url
        self.problem = problem


class UrlNotAllowedError(AudioUrlError):
    code = "audio_url_not_allowed"


class UrlUnreachableError(AudioUrlError):
    code = "audio_url_unreachable"


class UrlStatusError(AudioUrlError):
    code = "audio_url_http_error"

    def __init__(self, url: str, status_code: int) -> None:
        super().__init__(url, f"the server answered HTTP {status_code}; check that the URL is right and public")
        self.status_code = status_code


class AudioTooLargeError(AudioUrlError):
    code = "audio_too_large"


class NotAudioError(AudioUrlError):
    code = "audio_url_not_audio"


class SpeechError(IvrsimError):
    """Text to speech that cannot be rendered."""

    code = "speech_error"


class UnknownVoiceError(SpeechError):
    """A voice id that the catalog does not have; ``suggestions`` are the closest ids."""

    code = "unknown_voice"

    def __init__(self, voice: str, suggestions: list[str]) -> None:
        hint = f"; did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        super().__init__(f"unknown voice {voice!r}{hint} (`ivrsim voices` lists them all)")
        self.voice = voice
        self.suggestions = suggestions


class SsmlError(SpeechError):
    """SSML that does not parse, with the 1-based ``line`` and ``column`` of the problem."""

    code = "invalid_ssml"

    def __init__(self, problem: str, line: int, column: int) -> None:
        super().__init__(f"invalid SSML at line {line}, column {column}: {problem}")
        self.problem = problem
        self.line = line
        self.column = column


class TtsSettingError(SpeechError):
    """A speed, pitch or sample rate out of range; ``field`` names it."""

    code = "invalid_tts_setting"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class TtsEngineError(SpeechError):
    code = "tts_engine_error"
