"""Twilio's voice names (``alice``, ``Polly.Matthew``, ``Google.en-US-Neural2-D``) mapped to the closest
ivrsim voice of the catalog: the same language and gender, else the default voice with a note saying why."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ivrsim.speech.voices import VoiceCatalog

#: What of a voice or language name a note may repeat (it is the app's text): a plain name, else nothing.
_SHOWN_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

#: Twilio's default Say language.
DEFAULT_LANGUAGE = "en-US"

#: Amazon Polly voices Twilio offers (``Polly.Joanna``, ``Polly.Joanna-Neural``): language and gender,
#: to pick the closest ivrsim voice.
POLLY_VOICES: dict[str, tuple[str, str]] = {
    "Joanna": ("en-US", "female"), "Salli": ("en-US", "female"), "Kimberly": ("en-US", "female"), "Kendra": ("en-US", "female"),
    "Ivy": ("en-US", "female"), "Ruth": ("en-US", "female"), "Danielle": ("en-US", "female"), "Matthew": ("en-US", "male"),
    "Joey": ("en-US", "male"), "Justin": ("en-US", "male"), "Kevin": ("en-US", "male"), "Stephen": ("en-US", "male"),
    "Gregory": ("en-US", "male"), "Amy": ("en-GB", "female"), "Emma": ("en-GB", "female"), "Brian": ("en-GB", "male"),
    "Arthur": ("en-GB", "male"), "Nicole": ("en-AU", "female"), "Olivia": ("en-AU", "female"), "Russell": ("en-AU", "male"),
    "Raveena": ("en-IN", "female"), "Aditi": ("en-IN", "female"), "Celine": ("fr-FR", "female"), "Céline": ("fr-FR", "female"),
    "Lea": ("fr-FR", "female"), "Léa": ("fr-FR", "female"), "Mathieu": ("fr-FR", "male"), "Remi": ("fr-FR", "male"),
    "Chantal": ("fr-CA", "female"), "Gabrielle": ("fr-CA", "female"), "Conchita": ("es-ES", "female"), "Lucia": ("es-ES", "female"),
    "Enrique": ("es-ES", "male"), "Sergio": ("es-ES", "male"), "Mia": ("es-MX", "female"), "Penelope": ("es-US", "female"),
    "Lupe": ("es-US", "female"), "Miguel": ("es-US", "male"), "Pedro": ("es-US", "male"), "Marlene": ("de-DE", "female"),
    "Vicki": ("de-DE", "female"), "Hans": ("de-DE", "male"), "Daniel": ("de-DE", "male"), "Carla": ("it-IT", "female"),
    "Bianca": ("it-IT", "female"), "Giorgio": ("it-IT", "male"), "Adriano": ("it-IT", "male"), "Camila": ("pt-BR", "female"),
    "Vitoria": ("pt-BR", "female"), "Ricardo": ("pt-BR", "male"), "Ines": ("pt-PT", "female"), "Cristiano": ("pt-PT", "male"),
    "Mizuki": ("ja-JP", "female"), "Takumi": ("ja-JP", "male"), "Seoyeon": ("ko-KR", "female"), "Zhiyu": ("cmn-CN", "female"),
    "Lotte": ("nl-NL", "female"), "Ruben": ("nl-NL", "male"), "Tatyana": ("ru-RU", "female"), "Maxim": ("ru-RU", "male"),
}
#: Twilio's basic voices: ``alice`` speaks many languages; ``man`` and ``woman`` English, French, German, Spanish.
BASIC_VOICES = {"alice": "female", "woman": "female", "man": "male"}


@dataclass(frozen=True)
class VoiceChoice:
    """The ivrsim voice for a Twilio voice and language (None: the default voice), and why, when it is not exact."""

    voice_id: str | None
    note: str | None = None


def choose_voice(twilio_voice: str | None, language: str | None, catalog: VoiceCatalog) -> VoiceChoice:
    """The closest ivrsim voice: an exact catalog id (``Google.en-US-Neural2-F``), else one of the right
    language and gender (``Polly.Matthew`` is a US English man), else the default voice, with a note."""
    name = (twilio_voice or "").strip()
    gender = "female"
    wanted_language = language
    if name.startswith(("Google.", "Polly.")):
        family, _, rest = name.partition(".")
        if family == "Google":
            if rest in catalog:
                return VoiceChoice(catalog.get(rest).id)
            parts = rest.split("-")
            wanted_language = wanted_language or "-".join(parts[:2])
            gender = "male" if parts and parts[-1] in ("B", "D", "J") else "female"
        else:
            polly = POLLY_VOICES.get(rest.split("-")[0])
            if polly is not None:
                wanted_language = wanted_language or polly[0]
                gender = polly[1]
    elif name.lower() in BASIC_VOICES:
        gender = BASIC_VOICES[name.lower()]
    elif name and name in catalog:
        return VoiceChoice(catalog.get(name).id)
    elif name:
        return VoiceChoice(None, f"voice {_shown(name)} is not one ivrsim knows; the default voice speaks")
    wanted_language = wanted_language or DEFAULT_LANGUAGE
    voice_id = _voice_for(wanted_language, gender, catalog)
    if voice_id is None:
        return VoiceChoice(None, f"no ivrsim voice speaks {_shown(wanted_language)}; the default voice speaks")
    return VoiceChoice(voice_id)


def _voice_for(language: str, gender: str, catalog: VoiceCatalog) -> str | None:
    voices = [voice for voice in catalog if voice.language.lower() == language.lower()]
    if not voices:
        prefix = language.split("-")[0].lower()
        voices = [voice for voice in catalog if voice.language.split("-")[0].lower() == prefix]
    if not voices:
        return None
    # the catalog lists the Neural (documented) voices first
    return next((voice.id for voice in voices if voice.gender == gender), voices[0].id)


def _shown(name: str) -> str:
    """``name`` quoted when it is a plain voice or language name; else a neutral stand-in (never arbitrary app text)."""
    return repr(name) if _SHOWN_NAME.match(name) else "(a name that is not a voice name)"
