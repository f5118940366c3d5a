"""A call run by the user's TwiML app, as Twilio runs it: ask ``url`` for TwiML when the call is answered,
run its verbs in the call, post what a Gather, Record or Dial gave to its ``action`` and run the TwiML
that comes back; the call hangs up when a document runs out of verbs.

Every request carries Twilio's parameters (``ivrsim.flows.twiml.params``) and, when an auth token is set,
``X-Twilio-Signature``. What the app answers badly (no answer in time, a non-2xx status, not XML, a verb
ivrsim does not run) ends the call ``failed`` with a reason that names the URL, the status or the line.
Events: ``twiml.requested`` for each document, ``twiml.verb`` for each verb run, ``twiml.dialed`` and
``twiml.rejected``, so the call's timeline shows what the app made it do.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs

import httpx
import numpy as np

from ivrsim.engine.actions import PlayAudio
from ivrsim.engine.dialogue import (
    CallEnded,
    Conversation,
    Dialogue,
    DialogueError,
    RecordResult,
)
from ivrsim.exceptions import MediaError, SpeechError
from ivrsim.speech.voices import VoiceCatalog
from ivrsim.flows.twiml.document import (
    Dial,
    Gather,
    Hangup,
    Pause,
    Play,
    Prompt,
    Record,
    Redirect,
    Reject,
    Say,
    TwimlDocument,
    TwimlError,
    Verb,
    parse_twiml,
)
from ivrsim.flows.twiml.params import (
    SIGNATURE_HEADER,
    account_sid,
    call_parameters,
    get_url,
    sid,
    signature,
)
from ivrsim.webhooks.app_client import DEFAULT_APP_TIMEOUT_S, AppRequestError, shown_url

logger = logging.getLogger(__name__)

#: Most TwiML documents one call may ask for (the first, then Redirects and actions): a loop between an
#: app's pages ends the call rather than running for ever.
MAX_DOCUMENTS_PER_CALL = 200
#: Longest the request after a hang-up during a Record may take, in seconds (within the end of a call's
#: grace for its dialogue, ``ivrsim.engine.dialogue.END_GRACE_S``).
AFTER_HANGUP_TIMEOUT_S = 3.0
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
        return VoiceChoice(None, f"voice {name!r} is not one ivrsim knows; the default voice speaks")
    wanted_language = wanted_language or DEFAULT_LANGUAGE
    voice_id = _voice_for(wanted_language, gender, catalog)
    if voice_id is None:
        return VoiceChoice(None, f"no ivrsim voice speaks {wanted_language}; the default voice speaks")
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


@dataclass(frozen=True)
class _Next:
    """The next document to ask for: where, how, and the parameters beside the call's."""

    url: str
    method: str
    params: Mapping[str, str]


def twiml_dialogue(url: str, method: str = "POST") -> Dialogue:
    """The dialogue of a call run by the TwiML app at ``url`` (asked with ``method``, GET or POST)."""

    async def dialogue(conversation: Conversation) -> None:
        await TwimlCall(conversation, url, method).run()

    return dialogue


def connection_overrides(url: str) -> tuple[str, float]:
    """``url`` without its fragment, and the request's timeout from Twilio's connection overrides in it
    (``#tt=`` total and ``#rt=`` read timeout in milliseconds; Twilio's most and default, 15 s)."""
    parsed = httpx.URL(url)
    timeout_s = DEFAULT_APP_TIMEOUT_S
    if parsed.fragment:
        overrides = parse_qs(parsed.fragment)
        for key in ("tt", "rt"):
            for value in overrides.get(key, []):
                if value.isdigit() and int(value) > 0:
                    timeout_s = min(timeout_s, int(value) / 1000)
    return str(parsed.copy_with(fragment=None)), timeout_s


class TwimlCall:
    """One call's run of a TwiML app (module docstring)."""

    def __init__(self, conversation: Conversation, url: str, method: str) -> None:
        self.conv = conversation
        self.url = url
        self.method = method.upper()
        settings = conversation.services.settings
        self.auth_token = settings.twilio_auth_token
        request = conversation.request
        self.parameters = call_parameters(conversation.call_id, account_sid(settings.seed), request.from_, request.to)
        self.documents = 0

    async def run(self) -> None:
        try:
            first = httpx.URL(self.url)
        except httpx.InvalidURL:
            first = httpx.URL("invalid:")
        if first.scheme not in ("http", "https") or not first.host or self.method not in ("GET", "POST"):
            raise DialogueError("TwiML app: url must be an http(s) URL and method GET or POST, e.g. https://example.com/voice")
        step: _Next | None = _Next(self.url, self.method, {})
        while step is not None:
            document = await self.fetch(step)
            step = await self.execute(document)

    # -- asking the app ------------------------------------------------------------------------------------

    async def fetch(self, step: _Next, timeout_cap_s: float | None = None, parse: bool = True) -> TwimlDocument:
        """The document at ``step`` (empty without ``parse``); DialogueError names the URL and the status or line."""
        self.documents += 1
        if self.documents > MAX_DOCUMENTS_PER_CALL:
            raise DialogueError(f"TwiML app: more than {MAX_DOCUMENTS_PER_CALL} documents in one call (the last asked for: "
                                f"{step.method} {shown_url(step.url)}); Redirects or actions loop: end the call with <Hangup/>")
        url, timeout_s = connection_overrides(step.url)
        if timeout_cap_s is not None:
            timeout_s = min(timeout_s, timeout_cap_s)
        params = {**self.parameters, **step.params}
        if step.method == "GET":
            target, form = get_url(url, params), None
            signed = signature(self.auth_token, target) if self.auth_token else None
        else:
            target, form = str(httpx.URL(url)), params
            signed = signature(self.auth_token, target, params) if self.auth_token else None
        headers = {SIGNATURE_HEADER: signed} if signed is not None else {}
        shown = shown_url(url)
        try:
            response = await self.conv.apps.request(step.method, target, form=form, headers=headers, timeout_s=timeout_s)
        except AppRequestError as error:
            self.conv.emit("twiml.requested", url=shown, method=step.method, status_code=None, error=str(error))
            raise DialogueError(f"TwiML app: {error}") from None
        self.conv.emit("twiml.requested", url=shown, method=step.method, status_code=response.status_code,
                       elapsed_ms=round(response.elapsed_s * 1000, 1))
        if not 200 <= response.status_code < 300:
            raise DialogueError(f"TwiML app: {step.method} {shown} answered HTTP {response.status_code}; answer 200 with a TwiML document")
        if not parse:
            return TwimlDocument(url, ())
        try:
            return parse_twiml(response.text, url)
        except TwimlError as error:
            if response.content_type and "xml" not in response.content_type and "not well-formed" in str(error):
                raise TwimlError(f"{error} (the answer's content type is {response.content_type}; TwiML is text/xml)") from None
            raise

    def _resolve(self, document: TwimlDocument, target: str | None, verb: Verb, attribute: str) -> str:
        """``target`` (the document's own URL when None) resolved against the document's URL; http(s) only."""
        if target is None:
            return document.url
        resolved = httpx.URL(document.url).join(target) if document.url else httpx.URL(target)
        if resolved.scheme not in ("http", "https") or not resolved.host:
            raise TwimlError(f"TwiML from {shown_url(document.url)}: line {verb.line}: <{type(verb).__name__}> {attribute} must be an "
                             "http(s) URL or a path relative to the document's")
        return str(resolved)

    # -- running the verbs ---------------------------------------------------------------------------------

    async def execute(self, document: TwimlDocument) -> _Next | None:
        """Run ``document``'s verbs; the next document to ask for, or None when the call is to hang up."""
        for verb in document.verbs:
            self.conv.emit("twiml.verb", verb=type(verb).__name__, line=verb.line)
            if isinstance(verb, Say | Play | Pause):
                for prompt in await self.render(verb, document):
                    await self.conv.run(prompt)
            elif isinstance(verb, Gather):
                step = await self.gather(verb, document)
                if step is not None:
                    return step
            elif isinstance(verb, Record):
                return await self.record(verb, document)
            elif isinstance(verb, Redirect):
                return _Next(self._resolve(document, verb.url, verb, "the URL"), verb.method, {})
            elif isinstance(verb, Dial):
                step = await self.dial(verb, document)
                if step is not None:
                    return step
            elif isinstance(verb, Reject):
                self.conv.emit("twiml.rejected", line=verb.line, reason=verb.reason,
                               note="an answered outbound call cannot be rejected as an inbound call would be; the call hangs up")
                return None
            elif isinstance(verb, Hangup):
                return None
        return None

    async def render(self, prompt: Prompt, document: TwimlDocument) -> list[PlayAudio]:
        """``prompt`` ready to play, once per ``loop``."""
        where = f"TwiML from {shown_url(document.url)}: line {prompt.line}"
        if isinstance(prompt, Pause):
            samples = _silence(prompt.length_s, self.conv.rate_hz)
            return [PlayAudio("pause", samples, f"{prompt.length_s:g} s")] if len(samples) else []
        if isinstance(prompt, Say):
            choice = choose_voice(prompt.voice, prompt.language, self.conv.services.synthesizer.catalog)
            if choice.note is not None:
                self.conv.emit("twiml.warning", line=prompt.line, warning=choice.note)
            try:
                audio = await self.conv.prompt_say(prompt.text, voice=choice.voice_id)
            except SpeechError as error:
                raise DialogueError(f"{where}: <Say> cannot be spoken: {error}") from None
        elif prompt.digits is not None:
            audio = await self.conv.prompt_digits(prompt.digits)
        else:
            url = self._resolve(document, prompt.url, prompt, "the URL")
            try:
                audio = await self.conv.prompt_play(url)
            except MediaError as error:
                raise DialogueError(f"{where}: <Play> cannot play its audio: {error}") from None
        return [PlayAudio(audio.kind, audio.samples, audio.source, list(audio.warnings), text=audio.text) for _ in range(prompt.loop)]

    async def gather(self, verb: Gather, document: TwimlDocument) -> _Next | None:
        prompts: list[PlayAudio] = []
        for prompt in verb.prompts:
            prompts.extend(await self.render(prompt, document))
        heard = await self.conv.gather(
            prompts, input_type=verb.input, num_digits=verb.num_digits, finish_on_key=verb.finish_on_key, timeout_s=verb.timeout_s,
            barge_in=verb.barge_in, hints=list(verb.hints) or None, speech_timeout_s=verb.speech_timeout_s, language=verb.language,
        )
        if not heard.heard_anything and not verb.action_on_empty_result:
            return None  # as Twilio: no input, no action: on to the next verb
        params: dict[str, str] = {}
        if "dtmf" in verb.input.split():
            params["Digits"] = heard.digits
            if heard.finished_on_key:
                params["FinishedOnKey"] = heard.finished_on_key
        if heard.speech:
            params["SpeechResult"] = heard.speech
            params["Confidence"] = f"{heard.confidence:.3f}"
        return _Next(self._resolve(document, verb.action, verb, "action"), verb.method, params)

    async def record(self, verb: Record, document: TwimlDocument) -> _Next:
        action = self._resolve(document, verb.action, verb, "action")
        # timeout 0: no end on silence (the maximum length still ends it)
        silence_s = verb.timeout_s if verb.timeout_s > 0 else verb.max_length_s + 1
        try:
            message = await self.conv.record(max_length_s=verb.max_length_s, silence_timeout_s=silence_s, finish_on_key=verb.finish_on_key,
                                             beep=verb.play_beep)
        except CallEnded:
            await self._recorded_after_hangup(action, verb.method)
            raise
        return _Next(action, verb.method, self._recording_params(message))

    def _recording_params(self, message: RecordResult) -> dict[str, str]:
        params = {
            "RecordingUrl": message.url,
            "RecordingDuration": str(round(message.duration_s)),
            "RecordingSid": message.recording_id,
        }
        if message.digits:
            params["Digits"] = message.digits
        return params

    async def _recorded_after_hangup(self, action: str, method: str) -> None:
        """The caller hung up during a Record: as Twilio, post the message to the action anyway (with
        ``Digits`` "hangup"; the TwiML answered is not run), within the time a call's end allows."""
        message = self.conv.last_record
        if message is None or message.duration_s <= 0:
            return
        params = self._recording_params(message) | {"Digits": "hangup", "CallStatus": "completed"}
        step = _Next(action, method, params)
        try:
            await self.fetch(step, timeout_cap_s=AFTER_HANGUP_TIMEOUT_S, parse=False)
        except DialogueError as error:  # the call is over: its app's error changes nothing
            logger.info("call %s: the recording's action after hang-up failed: %s", self.conv.call_id, error)

    async def dial(self, verb: Dial, document: TwimlDocument) -> _Next | None:
        """A simulated ``<Dial>``: each number's outcome comes from the phonebook (busy, no-answer, failed,
        else completed); no second leg is bridged, so ``DialCallDuration`` is 0. A no-answer rings for
        the Dial's ``timeout`` in call time, as Twilio waits."""
        statuses = {number: self.conv.dial_status(number) for number in verb.numbers}
        answered = [number for number, status in statuses.items() if status == "completed"]
        number = answered[0] if answered else verb.numbers[0]
        status = statuses[number]
        if status == "no-answer":
            await self.conv.pause(verb.timeout_s)
        self.conv.emit("twiml.dialed", line=verb.line, number=number, status=status)
        if verb.action is None:
            return None
        params = {"DialCallStatus": status, "DialCallSid": sid("CA", f"{self.conv.call_id}/dial/{verb.line}/{number}"),
                  "DialCallDuration": "0"}
        return _Next(self._resolve(document, verb.action, verb, "action"), verb.method, params)


def _silence(seconds: float, rate_hz: int) -> np.ndarray:
    return np.zeros(round(seconds * rate_hz), dtype=np.float32)
