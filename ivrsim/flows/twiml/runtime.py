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

from ivrsim.engine.actions import CallContext, PlayAudio
from ivrsim.engine.dialogue import (
    CallEnded,
    Conversation,
    Dialogue,
    DialogueError,
    RecordResult,
)
from ivrsim.exceptions import MediaError, SpeechError
from ivrsim.flows.twiml.document import (
    MAX_GATHER_PROMPTS,
    MAX_LOOP,
    MAX_PAUSE_S,
    Dial,
    Gather,
    Hangup,
    Pause,
    Play,
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
from ivrsim.flows.twiml.voices import choose_voice
from ivrsim.webhooks.app_client import DEFAULT_APP_TIMEOUT_S, AppRequestError, shown_url

logger = logging.getLogger(__name__)

#: Most TwiML documents one call may ask for (the first, then Redirects and actions): a loop between an
#: app's pages ends the call rather than running for ever.
MAX_DOCUMENTS_PER_CALL = 200
#: Longest the request after a hang-up during a Record may take, in seconds (within the end of a call's
#: grace for its dialogue, ``ivrsim.engine.dialogue.END_GRACE_S``).
AFTER_HANGUP_TIMEOUT_S = 3.0


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
            if isinstance(verb, Pause):
                await self.conv.pause(min(verb.length_s, MAX_PAUSE_S))  # silence frame by frame: no samples made
            elif isinstance(verb, Say | Play):
                audio = await self.render(verb, document)
                for _ in range(min(verb.loop, MAX_LOOP)):  # one play at a time, all sharing the samples
                    await self.conv.run(_again(audio))
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

    async def render(self, prompt: Say | Play, document: TwimlDocument) -> PlayAudio:
        """``prompt`` ready to play once (``_again`` plays it again for each ``loop``)."""
        where = f"TwiML from {shown_url(document.url)}: line {prompt.line}"
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
        return audio

    async def gather_prompts(self, verb: Gather, document: TwimlDocument) -> list[PlayAudio]:
        """The Gather's prompts, each once per ``loop``: the loops share one rendering's samples and a Pause
        holds none (``_Silence``), so the memory is bounded by the rendered Says and Plays, not the lengths."""
        prompts: list[PlayAudio] = []
        for prompt in verb.prompts:
            if isinstance(prompt, Pause):
                seconds = min(prompt.length_s, MAX_PAUSE_S)
                if seconds > 0:
                    prompts.append(_Silence.lasting(seconds, self.conv.rate_hz))
                continue
            audio = await self.render(prompt, document)
            prompts.extend(_again(audio) for _ in range(min(prompt.loop, MAX_LOOP)))
            if len(prompts) > MAX_GATHER_PROMPTS:
                raise DialogueError(f"TwiML from {shown_url(document.url)}: line {verb.line}: <Gather> plays more than "
                                    f"{MAX_GATHER_PROMPTS:,} prompts, loops counted; use fewer or smaller loops")
        return prompts

    async def gather(self, verb: Gather, document: TwimlDocument) -> _Next | None:
        prompts = await self.gather_prompts(verb, document)
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


def _again(audio: PlayAudio) -> PlayAudio:
    """A fresh play of ``audio`` (its own position and events), sharing its samples."""
    return PlayAudio(audio.kind, audio.samples, audio.source, list(audio.warnings), text=audio.text)


class _Silence(PlayAudio):
    """A ``<Pause>`` among a Gather's prompts (which are played audio): its samples are a read-only view of
    a single zero, so a long pause holds no memory, and each frame is fresh silence."""

    @classmethod
    def lasting(cls, seconds: float, rate_hz: int) -> _Silence:
        return cls("pause", np.broadcast_to(np.zeros(1, dtype=np.float32), (round(seconds * rate_hz),)), f"{seconds:g} s")

    def frame(self, call: CallContext) -> np.ndarray | None:
        out = super().frame(call)
        return None if out is None else np.zeros(call.frame_samples, dtype=np.float32)
