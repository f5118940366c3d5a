"""TwiML parsing (verbs with their lines, Twilio's defaults, attribute checks, hostile XML refused),
Twilio's request signature checked against the official ``twilio`` library, and voice choice."""

from __future__ import annotations

import numpy as np
import pytest
from twilio.request_validator import RequestValidator

from ivrsim.flows.twiml.document import (
    MAX_CALL_S,
    MAX_DIAL_TIMEOUT_S,
    MAX_DOCUMENT_BYTES,
    MAX_GATHER_PROMPTS,
    MAX_GATHER_TIMEOUT_S,
    MAX_LOOP,
    MAX_NUM_DIGITS,
    MAX_PAUSE_S,
    MAX_PLAY_DIGITS,
    Dial,
    Gather,
    Hangup,
    Pause,
    Play,
    Record,
    Redirect,
    Reject,
    Say,
    TwimlError,
    parse_twiml,
)
from ivrsim.flows.twiml.params import account_sid, call_parameters, get_url, signature
from ivrsim.flows.twiml.runtime import _Silence, connection_overrides
from ivrsim.flows.twiml.voices import choose_voice
from ivrsim.speech.voices import VoiceCatalog

URL = "https://app.example.com/ivr/voice?token=s3cret"

MENU = """<?xml version="1.0" encoding="UTF-8"?>
<Response>
  <Gather input="dtmf speech" numDigits="1" timeout="3" action="/menu" method="GET" hints="billing, sales" speechTimeout="auto">
    <Say voice="Polly.Matthew" language="en-US" loop="2">Press 1 for <emphasis>billing</emphasis> &amp; more.</Say>
    <Pause length="2"/>
    <Play loop="0">https://example.com/hold.wav</Play>
  </Gather>
  <Play digits="1w2#"/>
  <Record maxLength="30" playBeep="false" finishOnKey="#*" action="recorded"/>
  <Redirect method="GET">/voice</Redirect>
  <Dial action="/dialed" timeout="10">
    <Number>+15550100486</Number>
    <Number>+15550100002</Number>
  </Dial>
  <Dial>+15550100001</Dial>
  <Reject reason="busy"/>
  <Hangup/>
</Response>
"""


def test_verbs_carry_their_lines_and_attributes() -> None:
    document = parse_twiml(MENU, URL)
    assert document.url == URL
    gather, play, record, redirect, dial, dial_text, reject, hangup = document.verbs
    assert gather == Gather(3, "dtmf speech", 1, 3.0, "#", "/menu", "GET", None, ("billing", "sales"), None, False, True, (
        Say(4, "Press 1 for <emphasis>billing</emphasis> &amp; more.", "Polly.Matthew", "en-US", 2),
        Pause(5, 2.0),
        Play(6, "https://example.com/hold.wav", MAX_LOOP),
    ))
    assert play == Play(8, "", 1, "1w2#")
    assert record == Record(9, "recorded", "POST", 30.0, "#*", False, 5.0)
    assert redirect == Redirect(10, "/voice", "GET")
    assert dial == Dial(11, ("+15550100486", "+15550100002"), "/dialed", "POST", 10.0)
    assert dial_text == Dial(15, ("+15550100001",))
    assert reject == Reject(16, "busy")
    assert hangup == Hangup(17)


def test_twilios_defaults() -> None:
    gather, record, say = parse_twiml("<Response><Gather timeout='7'/><Record/><Say>Hi</Say></Response>").verbs
    assert isinstance(gather, Gather) and isinstance(record, Record) and isinstance(say, Say)
    assert (gather.input, gather.num_digits, gather.finish_on_key, gather.action, gather.method) == ("dtmf", None, "#", None, "POST")
    assert gather.speech_timeout_s == 7.0  # speechTimeout defaults to timeout
    assert (record.max_length_s, record.finish_on_key, record.play_beep, record.timeout_s, record.action) == (3600.0, "1234567890*#", True, 5.0, None)
    assert (say.voice, say.language, say.loop) == (None, None, 1)
    assert parse_twiml("<Response/>").verbs == ()


@pytest.mark.parametrize(("body", "expected"), [
    ("<Response>\n  <Connect><Stream url='wss://x'/></Connect>\n</Response>", "line 2: <Connect> is not supported by ivrsim"),
    ("<Response>\n\n  <Enqueue>support</Enqueue>\n</Response>", "line 3: <Enqueue> is not supported by ivrsim"),
    ("<Response>\n  <Speak>hi</Speak>\n</Response>", "line 2: <Speak> is not a TwiML verb"),
    ("<Response>\n  <Gather>\n    <Record/>\n  </Gather>\n</Response>", "line 3: <Record> cannot be nested in <Gather>"),
    ("<Response>\n  <Dial>\n    <Client>alice</Client>\n  </Dial>\n</Response>", "line 3: <Client> in <Dial> is not supported by ivrsim"),
    ("<Response><Gather numDigits='0'/></Response>", f"line 1: <Gather> numDigits must be a whole number from 1 to {MAX_NUM_DIGITS}"),
    ("<Response><Gather input='video'/></Response>", "<Gather> input must be dtmf, speech"),
    ("<Response><Gather finishOnKey='##'/></Response>", "<Gather> finishOnKey must be one key"),
    ("<Response><Gather speechTimeout='soon'/></Response>", "<Gather> speechTimeout must be a number of seconds"),
    ("<Response><Redirect method='PUT'>/x</Redirect></Response>", "<Redirect> method must be GET or POST"),
    ("<Response><Redirect/></Response>", "<Redirect> has no URL"),
    ("<Response><Say loop='-1'>x</Say></Response>", "<Say> loop must be a whole number from 0 to 1,000 (0: as many times"),
    ("<Response><Say>  </Say></Response>", "<Say> has no text"),
    ("<Response><Play digits='12x'/></Response>", "<Play> digits must be 1 to 128 keys"),
    ("<Response><Record playBeep='yes'/></Response>", "<Record> playBeep must be true or false"),
    ("<Response><Dial/></Response>", "<Dial> has no number"),
    ("<Response><Reject reason='nope'/></Response>", "<Reject> reason must be rejected or busy"),
    ("<?xml version='1.0'?>\n<Resp/>", "line 2: the root element is <Resp>"),
])
def test_what_ivrsim_cannot_run_is_named_with_its_line(body: str, expected: str) -> None:
    with pytest.raises(TwimlError) as raised:
        parse_twiml(body, URL)
    message = str(raised.value)
    assert expected in message, message
    assert message.startswith("TwiML from https://app.example.com/ivr/voice:") and "s3cret" not in message


@pytest.mark.parametrize(("body", "expected"), [
    ("<Response>\n<Gather numDigits='SECRET'/></Response>", "line 2: <Gather> numDigits must be a whole number from 1 to"),
    ("<Response>\n<Gather speechTimeout='SECRET'/></Response>", "line 2: <Gather> speechTimeout must be a number of seconds from 0 to"),
    ("<Response>\n<Gather input='SECRET'/></Response>", 'line 2: <Gather> input must be dtmf, speech or "dtmf speech"'),
    ("<Response>\n<Gather finishOnKey='SECRET'/></Response>", "line 2: <Gather> finishOnKey must be one key of 0-9, * and #"),
    ("<Response>\n<Gather bargeIn='SECRET'/></Response>", "line 2: <Gather> bargeIn must be true or false"),
    ("<Response>\n<Redirect method='SECRET'>/x</Redirect></Response>", "line 2: <Redirect> method must be GET or POST"),
    ("<Response>\n<Record finishOnKey='SECRET'/></Response>", "line 2: <Record> finishOnKey must be keys of 0-9, * and #"),
    ("<Response>\n<Play digits='SECRET'/></Response>", "line 2: <Play> digits must be 1 to"),
    ("<Response>\n<Reject reason='SECRET'/></Response>", "line 2: <Reject> reason must be rejected or busy"),
    ("<Response>\n<Pause length='SECRET'/></Response>", "line 2: <Pause> length must be a whole number of seconds from 0 to"),
    ("<Response>\n<x-SECRET/></Response>", "line 2: an unknown element is not a TwiML verb"),
    ("<Response>\n<SECRETSECRETSECRETSECRETSECRETSECRET/></Response>", "line 2: an unknown element is not a TwiML verb"),
    ("<Response>\n<Gather><SECRET.x/></Gather></Response>", "line 2: an unknown element in <Gather> is not a TwiML verb"),
    ("<Response>\n<Dial><SECRET_1/></Dial></Response>", "line 2: an unknown element in <Dial> is not a noun of <Dial>"),
    ("<Response>\n<Hangup><SECRET-1/></Hangup></Response>", "line 2: an unknown element cannot be nested in <Hangup>"),
    ("<SECRET-root/>", "line 1: the root element is an unknown element"),
])
def test_errors_name_element_attribute_line_and_range_never_the_value(body: str, expected: str) -> None:
    with pytest.raises(TwimlError) as raised:
        parse_twiml(body, URL)
    message = str(raised.value)
    assert expected in message, message
    assert "SECRET" not in message


@pytest.mark.parametrize(("body", "expected"), [
    (f"<Pause length='{MAX_PAUSE_S + 1}'/>", f"<Pause> length must be a whole number of seconds from 0 to {MAX_PAUSE_S}"),
    ("<Pause length='100000'/>", f"<Pause> length must be a whole number of seconds from 0 to {MAX_PAUSE_S}"),
    (f"<Say loop='{MAX_LOOP + 1}'>x</Say>", "<Say> loop must be a whole number from 0 to 1,000"),
    (f"<Play loop='{MAX_LOOP + 1}'>https://example.com/a.wav</Play>", "<Play> loop must be a whole number from 0 to 1,000"),
    (f"<Play digits='{'w' * (MAX_PLAY_DIGITS + 1)}'/>", f"<Play> digits must be 1 to {MAX_PLAY_DIGITS} keys"),
    (f"<Record maxLength='{MAX_CALL_S + 1}'/>", "<Record> maxLength must be a whole number of seconds from 1 to 14,400"),
    (f"<Record timeout='{MAX_CALL_S + 1}'/>", "<Record> timeout must be a whole number of seconds from 0 to 14,400 (0: no end on silence)"),
    (f"<Gather timeout='{MAX_GATHER_TIMEOUT_S + 1}'/>", f"<Gather> timeout must be a whole number of seconds from 1 to {MAX_GATHER_TIMEOUT_S}"),
    (f"<Gather speechTimeout='{MAX_GATHER_TIMEOUT_S + 1}'/>", f"<Gather> speechTimeout must be a number of seconds from 0 to {MAX_GATHER_TIMEOUT_S}"),
    ("<Gather speechTimeout='inf'/>", "<Gather> speechTimeout must be a number of seconds"),
    (f"<Gather numDigits='{MAX_NUM_DIGITS + 1}'/>", f"<Gather> numDigits must be a whole number from 1 to {MAX_NUM_DIGITS}"),
    ("<Gather numDigits='99999999999999999999999'/>", f"<Gather> numDigits must be a whole number from 1 to {MAX_NUM_DIGITS}"),
    ("<Gather>" + "<Say loop='0'>x</Say>" * (MAX_GATHER_PROMPTS // MAX_LOOP + 1) + "</Gather>",
     f"<Gather> plays more than {MAX_GATHER_PROMPTS:,} prompts, loops counted"),
    (f"<Dial timeout='{MAX_DIAL_TIMEOUT_S + 1}'>+15550100001</Dial>", f"<Dial> timeout must be a whole number of seconds from 1 to {MAX_DIAL_TIMEOUT_S}"),
    (f"<Dial timeLimit='{MAX_CALL_S + 1}'>+15550100001</Dial>", "<Dial> timeLimit must be a whole number of seconds from 1 to 14,400"),
])
def test_what_scales_a_calls_work_or_memory_is_bounded(body: str, expected: str) -> None:
    with pytest.raises(TwimlError) as raised:
        parse_twiml(f"<Response>\n{body}\n</Response>", URL)
    assert f"line 2: {expected}" in str(raised.value), str(raised.value)


def test_the_bounds_themselves_are_accepted() -> None:
    body = (f"<Response><Pause length='{MAX_PAUSE_S}'/><Say loop='{MAX_LOOP}'>x</Say><Record maxLength='{MAX_CALL_S}' timeout='0'/>"
            f"<Gather timeout='{MAX_GATHER_TIMEOUT_S}' numDigits='{MAX_NUM_DIGITS}'>" + "<Play loop='0'>a.wav</Play>" * (MAX_GATHER_PROMPTS // MAX_LOOP)
            + f"</Gather><Dial timeout='{MAX_DIAL_TIMEOUT_S}' timeLimit='{MAX_CALL_S}'>+15550100001</Dial></Response>")
    pause, say, record, gather, dial = parse_twiml(body, URL).verbs
    assert pause == Pause(1, float(MAX_PAUSE_S)) and isinstance(say, Say) and say.loop == MAX_LOOP
    assert isinstance(record, Record) and (record.max_length_s, record.timeout_s) == (MAX_CALL_S, 0.0)
    assert isinstance(gather, Gather) and sum(p.loop for p in gather.prompts if isinstance(p, Play)) == MAX_GATHER_PROMPTS
    assert isinstance(dial, Dial) and (dial.timeout_s, dial.time_limit_s) == (MAX_DIAL_TIMEOUT_S, MAX_CALL_S)


@pytest.mark.parametrize(("body", "expected"), [
    ("<Play>file:///etc/passwd</Play>", "line 2: <Play> the URL must be an http(s) URL or a path relative to the document's"),
    ("<Play loop='2'> FILE:///etc/passwd </Play>", "line 2: <Play> the URL must be an http(s) URL"),
    ("<Redirect>file:///etc/passwd</Redirect>", "line 2: <Redirect> the URL must be an http(s) URL"),
    ("<Gather action='file:///etc/passwd'><Say>x</Say></Gather>", "line 2: <Gather> action must be an http(s) URL"),
    ("<Record action='file:///etc/passwd'/>", "line 2: <Record> action must be an http(s) URL"),
    ("<Dial action='ftp://example.com/x'>+15550100001</Dial>", "line 2: <Dial> action must be an http(s) URL"),
])
def test_urls_other_than_http_are_refused_when_parsed(body: str, expected: str) -> None:
    with pytest.raises(TwimlError) as raised:
        parse_twiml(f"<Response>\n{body}\n</Response>", URL)
    assert expected in str(raised.value) and "passwd" not in str(raised.value), str(raised.value)


def test_relative_and_http_urls_are_kept() -> None:
    play, redirect, gather = parse_twiml("<Response><Play>hold.wav</Play><Redirect>https://x.example/a</Redirect>"
                                         "<Gather action='/menu?x=1'/></Response>", URL).verbs
    assert (play, redirect) == (Play(1, "hold.wav"), Redirect(1, "https://x.example/a"))
    assert isinstance(gather, Gather) and gather.action == "/menu?x=1"


class _Call:
    """The little of a call a prompt's frame uses (the rate, the frame size, events)."""

    rate_hz = 8000
    frame_samples = 160

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []

    def emit(self, event_type: str, **facts: object) -> None:
        self.events.append((event_type, facts))


def test_a_pause_in_a_gather_holds_no_samples() -> None:
    silence = _Silence.lasting(MAX_PAUSE_S, 8000)
    assert len(silence.samples) == MAX_PAUSE_S * 8000 and silence.samples.strides == (0,)  # a view of one zero
    call = _Call()
    frame = silence.frame(call)  # type: ignore[arg-type]
    assert isinstance(frame, np.ndarray) and frame.shape == (160,) and frame.flags.writeable and not frame.any()
    assert call.events == [("prompt.started", {"kind": "pause", "source": "600 s", "duration_s": 600.0})]
    short = _Silence.lasting(0.03, 8000)
    assert [f is not None for f in (short.frame(call), short.frame(call), short.frame(call))] == [True, True, False]  # type: ignore[arg-type]


@pytest.mark.parametrize(("body", "expected"), [
    ("<Response>\n  <Say>SECRET</Sya>\n</Response>", "line 2, column 16: mismatched tag"),
    ("<Response>\n  <Say>SECRET</Say>\n", "line 3, column 1: no element found"),
    ("SECRET plain text", "line 1, column 1: syntax error"),
    ('{"SECRET": 1}', "line 1, column 1: not well-formed"),
    ("<Response><Say>&SECRET;</Say></Response>", "line 1, column 16: undefined entity"),
])
def test_malformed_xml_gives_line_and_column_never_the_content(body: str, expected: str) -> None:
    with pytest.raises(TwimlError) as raised:
        parse_twiml(body, URL)
    assert "not well-formed XML at " + expected in str(raised.value)
    assert "SECRET" not in str(raised.value)


@pytest.mark.parametrize("body", [
    # billion laughs: never expanded, refused at the DTD
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>\n<Response><Say>&lol2;</Say></Response>',
    # an external entity: the file is never read
    '<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n<Response><Say>&xxe;</Say></Response>',
    '<!DOCTYPE Response SYSTEM "http://example.com/twiml.dtd">\n<Response/>',
])
def test_dtds_and_entities_are_refused(body: str) -> None:
    with pytest.raises(TwimlError, match=r"line \d+, column \d+: a document type declaration \(DTD\) or entity is not accepted"):
        parse_twiml(body, URL)


def test_size_and_emptiness_are_bounded() -> None:
    big = "<Response>" + "<Pause/>" * (MAX_DOCUMENT_BYTES // 8) + "</Response>"
    with pytest.raises(TwimlError, match="over 65,536 bytes"):
        parse_twiml(big, URL)
    with pytest.raises(TwimlError, match="the answer is empty"):
        parse_twiml("  \n", URL)
    deep = "<Response><Say>" + "<s>" * 40 + "x" + "</s>" * 40 + "</Say></Response>"
    with pytest.raises(TwimlError, match="nested over"):
        parse_twiml(deep, URL)


def test_the_signature_is_the_one_twilios_library_validates() -> None:
    token = "12345"
    params = call_parameters("call_abc", account_sid(7), "+15559876543", "+15557001000") | {"Digits": "1234", "SpeechResult": "yes please"}
    validator = RequestValidator(token)
    post_url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert signature(token, post_url, params) == validator.compute_signature(post_url, params)
    assert validator.validate(post_url, params, signature(token, post_url, params))
    assert not validator.validate(post_url, params, signature("wrong", post_url, params))
    get = get_url("https://mycompany.com/myapp.php?foo=1", params)
    assert get.startswith("https://mycompany.com/myapp.php?foo=1&") and "Digits=1234" in get
    assert validator.validate(get, {}, signature(token, get))


def test_the_account_sid_is_fixed_by_the_seed() -> None:
    assert account_sid(7) == account_sid(7) != account_sid(8)
    assert account_sid(None).startswith("AC") and len(account_sid(None)) == 34
    assert set(account_sid(7)[2:]) <= set("0123456789abcdef")


@pytest.mark.parametrize(("voice", "language", "expected"), [
    (None, None, "en-US-Neural2-F"),
    ("alice", None, "en-US-Neural2-F"),
    ("man", None, "en-US-Neural2-D"),
    ("woman", "en-GB", "en-GB-Neural2-A"),
    ("alice", "fr-FR", "fr-FR-Neural2-A"),
    ("Polly.Matthew", None, "en-US-Neural2-D"),
    ("Polly.Joanna-Neural", None, "en-US-Neural2-F"),
    ("Polly.Hans", None, "de-DE-Standard-B"),
    ("Google.en-US-Neural2-D", None, "en-US-Neural2-D"),
    ("Google.de-DE-Wavenet-B", None, "de-DE-Standard-B"),
    ("Google.it-IT-Standard-A", None, "it-IT-Standard-A"),
    ("en-GB-Neural2-A", None, "en-GB-Neural2-A"),
])
def test_twilio_voices_map_to_the_closest_ivrsim_voice(voice: str | None, language: str | None, expected: str) -> None:
    choice = choose_voice(voice, language, VoiceCatalog.load())
    assert (choice.voice_id, choice.note) == (expected, None)


def test_an_unknown_voice_or_language_speaks_with_the_default_voice_and_says_so() -> None:
    catalog = VoiceCatalog.load()
    unknown = choose_voice("robot", None, catalog)
    assert unknown.voice_id is None and "robot" in (unknown.note or "")
    nowhere = choose_voice("alice", "tlh-KL", catalog)
    assert nowhere.voice_id is None and "tlh-KL" in (nowhere.note or "")
    odd = choose_voice("SECRET text, not a voice", "en-US", catalog)
    assert odd.voice_id is None and "SECRET" not in (odd.note or "") and "not one ivrsim knows" in (odd.note or "")


def test_connection_overrides_set_the_timeout_and_leave_the_url() -> None:
    assert connection_overrides("https://x.example/voice?a=1#tt=2500&rc=3") == ("https://x.example/voice?a=1", 2.5)
    assert connection_overrides("https://x.example/voice") == ("https://x.example/voice", 15.0)
    assert connection_overrides("https://x.example/v#rt=99999")[1] == 15.0  # never past Twilio's 15 s
