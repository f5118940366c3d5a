"""TwiML parsing (verbs with their lines, Twilio's defaults, attribute checks, hostile XML refused),
Twilio's request signature checked against the official ``twilio`` library, and voice choice."""

from __future__ import annotations

import pytest
from twilio.request_validator import RequestValidator

from ivrsim.speech.voices import VoiceCatalog
from ivrsim.flows.twiml.document import (
    MAX_DOCUMENT_BYTES,
    MAX_LOOP,
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
from ivrsim.flows.twiml.runtime import choose_voice, connection_overrides

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
    ("<Response><Gather numDigits='0'/></Response>", "line 1: <Gather> numDigits must be a whole number of at least 1"),
    ("<Response><Gather input='video'/></Response>", "<Gather> input must be dtmf, speech"),
    ("<Response><Gather finishOnKey='##'/></Response>", "<Gather> finishOnKey must be one key"),
    ("<Response><Gather speechTimeout='soon'/></Response>", "<Gather> speechTimeout must be a number of seconds"),
    ("<Response><Redirect method='PUT'>/x</Redirect></Response>", "<Redirect> method must be GET or POST"),
    ("<Response><Redirect/></Response>", "<Redirect> has no URL"),
    ("<Response><Say loop='-1'>x</Say></Response>", "<Say> loop must be a whole number of at least 0"),
    ("<Response><Say>  </Say></Response>", "<Say> has no text"),
    ("<Response><Play digits='12x'/></Response>", "<Play> digits must be keys"),
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


def test_connection_overrides_set_the_timeout_and_leave_the_url() -> None:
    assert connection_overrides("https://x.example/voice?a=1#tt=2500&rc=3") == ("https://x.example/voice?a=1", 2.5)
    assert connection_overrides("https://x.example/voice") == ("https://x.example/voice", 15.0)
    assert connection_overrides("https://x.example/v#rt=99999")[1] == 15.0  # never past Twilio's 15 s
