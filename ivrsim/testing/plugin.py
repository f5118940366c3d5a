"""The ivrsim pytest plugin (entry point ``pytest11``): regression tests of IVRs in a few lines.

    def test_pin(ivrsim):
        ivrsim.caller("+15550001111", [{"wait_for_prompt": {}}, {"press": {"digits": "1234#"}}])
        call = ivrsim.call(to="+15550001111", tts={"text": "Enter your PIN"}, gather={"num_digits": 4})
        assert call.digits == "1234"

Fixtures: ``ivrsim_server`` (one in-process server per session, virtual clock, temporary data folder, a
real webhook receiver) and ``ivrsim`` (a client per test: ``caller``, ``caller_file``, ``call``; the callers it
registers are forgotten after the test). A ``CallResult`` has the path, gathers, prompts, ``webhook(type)``,
``heard``. ``--ivrsim-update-golden`` records golden fixtures for ``ivrsim.assert_golden(call)``.

Golden audio tolerance: the two dual-channel WAVs must have the same length within ``GOLDEN_LENGTH_TOLERANCE_S``
(20 ms) and a Pearson correlation of at least ``GOLDEN_MIN_CORRELATION`` (0.9) over their common length,
both channels together. Heavy imports (the server, the ASR engine) happen only when a fixture is used, so
the plugin costs nothing in test runs that do not use it.
"""

from __future__ import annotations

import difflib
import json
import re
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ivrsim.client import Canary
    from ivrsim.webhooks.receiver import WebhookReceiver

UPDATE_GOLDEN_OPTION = "--ivrsim-update-golden"
PROMPT_CACHE_INI = "ivrsim_prompt_cache"
GOLDEN_LENGTH_TOLERANCE_S = 0.020
GOLDEN_MIN_CORRELATION = 0.9
#: ``heard`` allows one differing word per this many words of the phrase (none in phrases under 5 words).
HEARD_WORDS_PER_MISS = 5
#: Audio kept either side of a prompt's span when it is cut out of the recording (event times are per block).
SPAN_MARGIN_S = 0.1
#: Clauses of one prompt ``heard`` considers (its grammar grows with their square).
MAX_CLAUSES = 12
#: Longest a call may take from placing to its end, in wall seconds (an upper bound, not a wait).
CALL_TIMEOUT_S = 120.0
ENDED = ("completed", "busy", "no-answer", "failed")
#: Event fields that change from run to run (wall times, ids, URLs): left out of golden events.
VOLATILE_KEYS = frozenset({"call_id", "timestamp", "created_at", "ended_at", "answered_at", "recording_id", "url", "recording_url", "id"})


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ivrsim")
    group.addoption(UPDATE_GOLDEN_OPTION, action="store_true", default=False,
                    help="record golden fixtures (events and audio) for ivrsim.assert_golden instead of comparing with them")
    parser.addini(PROMPT_CACHE_INI, "folder of rendered prompts kept between runs (relative to the rootdir); default: pytest's "
                  "cache folder. Commit it beside golden fixtures so CI renders nothing and matches them to the sample.")


def _prompt_cache(config: pytest.Config) -> Path | None:
    """Where the server keeps rendered prompts: espeak-ng's output depends on what the process rendered
    before, so golden audio matches only when a prompt is rendered once and then reused."""
    configured = config.getini(PROMPT_CACHE_INI)
    if configured:
        return Path(str(config.rootpath)) / str(configured)
    cache = getattr(config, "cache", None)
    return cache.mkdir("ivrsim-prompts") if cache is not None else None


@dataclass
class IvrsimServer:
    """A running server: its URL and key, the webhook receiver every call's webhooks go to, and the speech
    recognisers ``CallResult.heard`` listens with (made on first use, kept for the session: their decoders
    take a while to load)."""

    base_url: str
    api_key: str
    receiver: WebhookReceiver
    data_dir: Path
    listeners: dict[type, Any] = field(default_factory=dict, repr=False)

    def listener(self, kind: type) -> Any:
        """The session's one ``kind`` engine (e.g. ``SphinxEngine``)."""
        if kind not in self.listeners:
            self.listeners[kind] = kind()
        return self.listeners[kind]


@pytest.fixture(scope="session")
def ivrsim_server(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[IvrsimServer]:
    """One in-process server for the session on the virtual clock (calls run as fast as the CPU allows),
    with a temporary data folder (its prompt cache kept between runs: ``_prompt_cache``) and a webhook
    receiver on loopback."""
    from ivrsim.api.server import BackgroundServer
    from ivrsim.settings import Settings
    from ivrsim.webhooks.receiver import WebhookReceiver

    key = "test_" + secrets.token_hex(8)
    data_dir = tmp_path_factory.mktemp("ivrsim-server")
    prompts = _prompt_cache(pytestconfig)
    if prompts is not None:
        prompts.mkdir(parents=True, exist_ok=True)
        (data_dir / "prompts").symlink_to(prompts, target_is_directory=True)
    settings = Settings(api_key=key, port=0, data_dir=data_dir, clock="virtual", workers=0, seed=None,
                        webhook_attempts=3, webhook_backoff_s=0.05)
    with WebhookReceiver() as receiver, BackgroundServer(settings) as server:
        yield IvrsimServer(server.base_url, key, receiver, data_dir)


@pytest.fixture
def ivrsim(ivrsim_server: IvrsimServer, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IvrsimClient]:
    """A client for one test: ``caller``, ``call``, ``assert_golden``; its callers are unregistered after."""
    from ivrsim.client import Canary

    with Canary(ivrsim_server.api_key, base_url=ivrsim_server.base_url) as canary:
        client = IvrsimClient(canary, ivrsim_server, request, tmp_path)
        yield client
        for number in list(client.registered):
            client.forget(number)


@dataclass
class Recording:
    duration_s: float
    path: Path
    channels: str


@dataclass
class CallResult:
    """A call that has ended, with what a test asserts on."""

    id: str
    status: str
    reason: str | None
    events: list[dict[str, Any]]
    webhooks: list[dict[str, Any]]
    recording: Recording | None
    data: dict[str, Any] = field(default_factory=dict)
    _transcript: str | None = field(default=None, repr=False)
    _server: IvrsimServer | None = field(default=None, repr=False)

    @property
    def path(self) -> list[str]:
        """The flow's nodes in the order entered (``flow.node_entered``)."""
        return [str(e.get("node")) for e in self.events if e["type"] == "flow.node_entered"]

    @property
    def gathers(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == "gather.completed"]

    @property
    def digits(self) -> str | None:
        """The first gather's digits (``gathers`` has them all); None when nothing was gathered."""
        return self.gathers[0].get("digits") if self.gathers else None

    @property
    def prompts(self) -> list[str]:
        """The texts of the say prompts the platform played (``prompt.started``)."""
        return [str(e["text"]) for e in self.events if e["type"] == "prompt.started" and e.get("text")]

    def webhook(self, event_type: str) -> dict[str, Any]:
        """The one webhook of ``event_type`` (e.g. ``flow.completed``) the call's webhook_url got; AssertionError
        naming the types it got when there is none, or more than one."""
        found = [hook for hook in self.webhooks if hook.get("type") == event_type]
        if len(found) != 1:
            got = ", ".join(str(hook.get("type")) for hook in self.webhooks) or "none"
            raise AssertionError(f"call {self.id}: expected one {event_type} webhook, got {len(found)} (webhooks: {got})")
        return found[0]

    def assert_path(self, expected: list[str]) -> None:
        if self.path != list(expected):
            diff = "\n".join(difflib.unified_diff(list(expected), self.path, "expected path", "path taken", lineterm=""))
            raise AssertionError(f"call {self.id} took another path through the flow ({self.status}: {self.reason}):\n{diff}")

    def transcript(self) -> str:
        """What the platform said: its channel of the recording, each say prompt's span (``prompt.started`` to
        ``prompt.completed``) transcribed by pocketsphinx (en-US) over that prompt's clauses; without prompt
        texts, the whole channel over ``IVR_VOCABULARY``."""
        return self._transcribe([])

    def heard(self, phrase: str) -> None:
        """Assert the platform said ``phrase``: some stretch of the transcript of its channel exactly as long
        (+-1 word for phrases of 5+ words) differs from it in at most ``len(phrase) // 5`` words, else
        AssertionError with the transcript. Numbers count as espeak says them ("42" -> "forty two")."""
        transcript = self._transcribe([phrase])
        expected = spoken_words(phrase)
        differing = _fewest_differing_words(expected, transcript.split())
        allowed = len(expected) // HEARD_WORDS_PER_MISS
        if differing > allowed:
            # A second listen, each prompt's own clauses (not the phrase) in any order and number: pocketsphinx
            # takes one grammar alternative per utterance, and an utterance holding two clauses ("press 1 for
            # sales, press 2 for billing") can come out as the one that was not asked for.
            looped = self._transcribe([], loop=True)
            if _fewest_differing_words(expected, looped.split()) <= allowed:
                return
            raise AssertionError(f"call {self.id}: the platform did not say {phrase!r} (best match differs in {differing} "
                                 f"of {len(expected)} words, at most {allowed} allowed); it said: {transcript!r}")

    def prompt_spans(self) -> list[PromptSpan]:
        """The say prompts with text, each with where it is in the recording: its call times minus the answer
        time (the recording starts at ``call.in-progress``)."""
        answered = next((e for e in self.events if e["type"] == "call.in-progress"), None)
        origin_s = float(answered["call_time_s"]) if answered is not None else 0.0
        spans: list[PromptSpan] = []
        for index, event in enumerate(self.events):
            if event["type"] != "prompt.started" or not event.get("text"):
                continue
            start_s = float(event["call_time_s"])
            completed = next((e for e in self.events[index + 1 :] if e["type"] == "prompt.completed"), None)
            end_s = float(completed["call_time_s"]) if completed is not None else start_s + float(event.get("duration_s") or 0.0)
            spans.append(PromptSpan(str(event["text"]), start_s - origin_s, end_s - origin_s))
        return spans

    def _transcribe(self, extra: list[str], loop: bool = False) -> str:
        import soundfile

        from ivrsim.speech.asr.phrases import IVR_VOCABULARY
        from ivrsim.speech.asr.sphinx_engine import SphinxEngine

        if self.recording is None:
            raise AssertionError(f"call {self.id} has no recording to listen to; place it with record=True")
        samples, rate_hz = soundfile.read(str(self.recording.path), dtype="float32", always_2d=True)
        platform = samples[:, 0]
        engine = self._server.listener(SphinxEngine) if self._server is not None else SphinxEngine()
        spans = self.prompt_spans()
        extras = [" ".join(spoken_words(e)) for e in extra]
        if not spans:
            # audio only: the common words of phone menus compete with the expected phrase, in any sequence
            results = engine.transcribe(platform, rate_hz, [*extras, *IVR_VOCABULARY], repeat=True)
            return " ".join(r.text for r in results if r.text)
        heard: list[str] = []
        for span in spans:
            # One closed grammar per prompt: every run of consecutive clauses of THAT prompt is an alternative
            # (voice activity detection may cut at a pause anywhere), and the expected phrase, which loses to
            # the clauses that were said. One alternative per utterance: with a loop the decoder skips words.
            clauses = [" ".join(w) for c in _CLAUSE_END.split(span.text) if (w := spoken_words(c))][:MAX_CLAUSES]
            runs = [" ".join(clauses[i:j]) for i in range(len(clauses)) for j in range(len(clauses), i, -1)]
            first = max(0, int((span.start_s - SPAN_MARGIN_S) * rate_hz))
            last = min(len(platform), int((span.end_s + SPAN_MARGIN_S) * rate_hz))
            if last <= first or not runs:
                continue
            if loop:
                results = engine.transcribe(platform[first:last], rate_hz, clauses, repeat=True)
            else:
                results = engine.transcribe(platform[first:last], rate_hz, [*runs, *extras])
            heard += [r.text for r in results if r.text]
        return " ".join(heard)


@dataclass(frozen=True)
class PromptSpan:
    """A say prompt's text and where it is in the recording (seconds from its start)."""

    text: str
    start_s: float
    end_s: float


#: A clause ends at punctuation followed by a space or the end ("3.50" and "1,234" stay whole).
_CLAUSE_END = re.compile(r"[.,;:?!]+(?=\s|$)")
_TOKEN = re.compile(r"\+?\d+(?:,\d{3})*(?:\.\d+)?|[^\W\d_]+(?:'[^\W\d_]+)*")
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))


def _cardinal(value: int) -> list[str]:
    """English words of a whole number, as espeak-ng's en-us voice says it (no "and")."""
    if value < 20:
        return [_ONES[value]]
    if value < 100:
        tens, ones = divmod(value, 10)
        return [_TENS[tens]] + ([_ONES[ones]] if ones else [])
    for scale, name in _SCALES:
        if value >= scale:
            high, rest = divmod(value, scale)
            return _cardinal(high) + [name] + (_cardinal(rest) if rest else [])
    raise AssertionError("unreachable")


def spoken_words(text: str) -> list[str]:
    """The words espeak-ng says for ``text``, lower case: "42" -> "forty two", "+15559876543" -> "plus fifteen
    billion five hundred ...", "3.50" -> "three point five zero", "007" -> "zero zero seven". The prompts'
    grammars and the expected phrase both go through it, so a number matches however it was written."""
    words: list[str] = []
    for token in _TOKEN.findall(text.lower()):
        if not token[0].isdigit() and token[0] != "+":
            words.append(token)
            continue
        if token.startswith("+"):
            words.append("plus")
            token = token[1:]
        whole, _, fraction = token.replace(",", "").partition(".")
        if len(whole) > 1 and whole.startswith("0") or len(whole) > 12:
            words += [_ONES[int(d)] for d in whole]
        else:
            words += _cardinal(int(whole))
        if fraction:
            words += ["point", *(_ONES[int(d)] for d in fraction)]
    return words


def _fewest_differing_words(expected: list[str], words: list[str]) -> int:
    """The fewest words (substituted, missing or extra: word edit distance) by which a stretch of ``words`` of
    exactly ``len(expected)`` words (+-1 for phrases of 5+ words) differs from ``expected``."""
    n = len(expected)
    if n == 0:
        return 0
    sizes = {n - 1, n, n + 1} if n >= 5 else {n}
    best = n
    for size in sizes:
        for start in range(max(1, len(words) - size + 1)):
            best = min(best, _edit_distance(expected, words[start : start + size]))
    return best


def _edit_distance(a: list[str], b: list[str]) -> int:
    previous = list(range(len(b) + 1))
    for i, word in enumerate(a, 1):
        current = [i]
        for j, other in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other)))
        previous = current
    return previous[-1]


class IvrsimClient:
    """Registers callers and places calls against the test server; ``canary`` is the plain API client."""

    def __init__(self, canary: Canary, server: IvrsimServer, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.canary = canary
        self.server = server
        self.registered: set[str] = set()
        self._request = request
        self._tmp_path = tmp_path
        self._calls = 0

    def callee(self, number: str, entry: dict[str, Any]) -> None:
        """Register any run-time phonebook entry for ``number`` (``PUT /_sim/phonebook/{number}``)."""
        self.canary.request("PUT", f"/_sim/phonebook/{number}", json=entry)
        self.registered.add(number)

    def caller(self, number: str, steps: list[Any], answer_after_rings: int = 1, name: str | None = None) -> None:
        """A scripted caller answers ``number`` for this test: ``steps`` as in a caller script."""
        script = {"name": name or f"caller-{number}", "answer_after_rings": answer_after_rings, "steps": steps}
        self.callee(number, {"kind": "scripted", "script": script})

    def caller_file(self, number: str, path: str | Path) -> None:
        """The scripted caller of the caller script ``path`` (YAML, as in a phonebook) answers ``number`` for this test."""
        import yaml

        script = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        if not isinstance(script, dict):
            raise TypeError(f"{path}: a caller script is a mapping with steps (and optionally name, answer_after_rings)")
        self.callee(number, {"kind": "scripted", "script": script})

    def forget(self, number: str) -> None:
        self.canary.request("DELETE", f"/_sim/phonebook/{number}")
        self.registered.discard(number)

    def call(self, to: str, from_: str | None = None, flow_file: str | Path | None = None, record: bool = True,
             timeout_s: float = CALL_TIMEOUT_S, **request: Any) -> CallResult:
        """Place a Canary request (``tts``, ``gather``, ``flow``, ``flow_id``, ``url``, ...; ``flow_file``: a
        flow YAML read and validated here, as ``ivrsim flows validate`` does: a FlowError naming file:line:col
        before any call), wait for its end and return what happened. Recorded by default (``heard``, golden
        fixtures)."""
        from ivrsim.flows import check_flow, load_flow_file
        from ivrsim.settings import DEFAULT_VERIFIED_NUMBERS

        if flow_file is not None:
            document, positions = load_flow_file(flow_file)
            check_flow(document, positions, default_name=Path(flow_file).stem)
            request["flow"] = document
        request.setdefault("webhook_url", f"{self.server.receiver.url}/ivrsim")
        placed = self.canary.voice.call(to=to, from_=from_ or DEFAULT_VERIFIED_NUMBERS[0], record=record, **request)
        final = self.canary.voice.wait(placed.id, timeout_s=timeout_s, poll_s=0.02)
        events = self.canary.voice.events(placed.id)
        webhooks: list[dict[str, Any]] = []
        if request.get("webhook_url", "").startswith(self.server.receiver.url):
            self.server.receiver.wait_for(placed.id, f"call.{final.status}", timeout_s=timeout_s)
            webhooks = [w.payload for w in self.server.receiver.received if w.payload.get("call_id") == placed.id]
        recording = self._recording(placed.id) if record else None
        return CallResult(placed.id, final.status, final.data.get("reason"), events, webhooks, recording, final.data, _server=self.server)

    def _recording(self, call_id: str) -> Recording | None:
        from ivrsim.client import CanaryError

        try:
            document = self.canary.request("GET", f"/v1/voice/calls/{call_id}/recording")
        except CanaryError as error:
            if error.status in (404, 409):  # not answered, or not recorded: no recording
                return None
            raise
        self._calls += 1
        path = self._tmp_path / f"{call_id}.wav"
        path.write_bytes(self.canary.download(document["url"]))
        return Recording(float(document.get("duration_s") or document.get("duration") or 0.0), path, str(document.get("channels", "dual")))

    def assert_golden(self, call: CallResult, name: str | None = None) -> None:
        """Compare ``call`` with its golden fixture under ``<test dir>/golden/<test name>[-name]/``, or record
        it there with ``--ivrsim-update-golden``. On a difference: the events' diff, and both WAVs kept."""
        node = self._request.node
        folder = Path(str(node.path)).parent / "golden" / _safe(node.name + (f"-{name}" if name else ""))
        events = normalise_events(call.events)
        if self._request.config.getoption(UPDATE_GOLDEN_OPTION):
            if call.recording is None:
                raise AssertionError(f"call {call.id} has no recording: golden fixtures need record=True")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "events.json").write_text(json.dumps(events, indent=1) + "\n", encoding="utf-8")
            shutil.copyfile(call.recording.path, folder / "call.wav")
            return
        if not (folder / "events.json").is_file():
            pytest.fail(f"no golden fixture at {folder}; record it with: pytest {UPDATE_GOLDEN_OPTION} {node.nodeid}", pytrace=False)
        golden = json.loads((folder / "events.json").read_text(encoding="utf-8"))
        problems: list[str] = []
        if golden != events:
            diff = difflib.unified_diff(_lines(golden), _lines(events), "golden events", "this run", lineterm="", n=2)
            problems.append("events differ:\n" + "\n".join(diff))
        if call.recording is not None and (folder / "call.wav").is_file():
            problem = compare_audio(folder / "call.wav", call.recording.path)
            if problem:
                problems.append(problem)
        if problems:
            kept = self._tmp_path / "golden-diff"
            kept.mkdir(exist_ok=True)
            if (folder / "call.wav").is_file():
                shutil.copyfile(folder / "call.wav", kept / "golden.wav")
            if call.recording is not None:
                shutil.copyfile(call.recording.path, kept / "actual.wav")
            problems.append(f"WAVs kept for listening: {kept / 'golden.wav'} and {kept / 'actual.wav'}; "
                            f"if the change is intended, run pytest {UPDATE_GOLDEN_OPTION}")
            pytest.fail(f"call {call.id} differs from its golden fixture {folder}:\n" + "\n".join(problems), pytrace=False)


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("_")[:120] or "test"


def _lines(events: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(e, sort_keys=True) for e in events]


def normalise_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events without what changes from run to run (wall times, ids, URLs), for golden comparison."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in VOLATILE_KEYS}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, str):
            return re.sub(r"\b(call|rec|recording)_[0-9a-f]{8,}\b", r"\1_*", value)
        return value

    return [clean(e) for e in events]


def compare_audio(golden: Path, actual: Path) -> str | None:
    """None when ``actual`` matches ``golden`` within the stated tolerance, else what differs."""
    import numpy as np
    import soundfile

    a, rate_a = soundfile.read(str(golden), dtype="float32", always_2d=True)
    b, rate_b = soundfile.read(str(actual), dtype="float32", always_2d=True)
    if rate_a != rate_b or a.shape[1] != b.shape[1]:
        return f"audio differs in format: golden {rate_a} Hz x {a.shape[1]} channels, this run {rate_b} Hz x {b.shape[1]}"
    length_diff_s = abs(len(a) - len(b)) / rate_a
    if length_diff_s > GOLDEN_LENGTH_TOLERANCE_S:
        return (f"audio length differs by {length_diff_s * 1000:.0f} ms (golden {len(a) / rate_a:.3f} s, this run {len(b) / rate_b:.3f} s; "
                f"tolerance {GOLDEN_LENGTH_TOLERANCE_S * 1000:.0f} ms)")
    n = min(len(a), len(b))
    x, y = a[:n].ravel().astype(np.float64), b[:n].ravel().astype(np.float64)
    energy_x, energy_y = float(np.sum(x * x)), float(np.sum(y * y))
    if energy_x < 1e-9 and energy_y < 1e-9:
        return None
    if energy_x < 1e-9 or energy_y < 1e-9:
        return "audio differs: one recording is silent and the other is not"
    correlation = float(np.corrcoef(x, y)[0, 1])
    if not correlation >= GOLDEN_MIN_CORRELATION:
        return f"audio differs: correlation {correlation:.3f} < {GOLDEN_MIN_CORRELATION}"
    return None
