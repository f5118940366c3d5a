"""A flow run in a call: ``flow_dialogue(document)`` interprets the validated document over the call's
``Conversation``, node by node, on the engine's own actions (no second engine).

Events: ``flow.node_entered`` {node, node_type} as each node starts; ``flow.completed`` {flow, path,
reason, variables, error?} once, however the flow ends (reason: "hangup node", "end", "no valid input at
<node>", "caller hung up", "error"); on the timeline only, ``flow.gather_failed`` (a gather's retries ran
out), ``flow.webhook_failed`` (a webhook node took ``on_error``) and ``flow.webhook_warning`` (the app's answer
set variables the node's ``sets`` does not list: they were ignored). A flow that enters more than ``MAX_STEPS_PER_CALL`` nodes in one call fails it (a loop that
validation could not see, e.g. through a webhook's ``next``).
"""

from __future__ import annotations

import difflib
import json
import logging
from typing import Any

import httpx

from ivrsim.engine.actions import PlayAudio
from ivrsim.engine.dialogue import (
    CallEnded,
    Conversation,
    Dialogue,
    DialogueError,
    GatherResult,
)
from ivrsim.exceptions import IvrsimError
from ivrsim.flows.document import (
    DEFAULT_RETRIES,
    MAX_STEPS_PER_CALL,
    NO_INPUT_PROMPT,
    NO_MATCH_PROMPT,
    Flow,
    FlowError,
    Node,
)
from ivrsim.flows.template import VARIABLE_NAME, render, render_data
from ivrsim.flows.validate import MAX_VALUE_CHARS, check_flow, gather_input
from ivrsim.speech.asr.phrases import normalise_phrase
from ivrsim.webhooks.app_client import AppRequestError, shown_url

logger = logging.getLogger(__name__)

#: How close heard words must be to a phrase (difflib's ratio) when they do not contain it word for word.
PHRASE_MATCH_RATIO = 0.75
#: Most variables one webhook answer may set.
MAX_WEBHOOK_VARIABLES = 100
#: How many of the names a webhook answer may not set ``flow.webhook_warning`` lists, and how much of each.
MAX_SHOWN_IGNORED = 20
MAX_SHOWN_NAME_CHARS = 64
#: Variables that describe the call, not the flow's state: left out of ``flow.completed``.
_CALL_VARIABLES = ("from", "to", "call_id")


def flow_dialogue(document: dict[str, Any]) -> Dialogue:
    """The dialogue that runs ``document`` (validated again when the call starts: the call ends failed,
    naming every problem, if it is not valid)."""

    async def dialogue(conversation: Conversation) -> None:
        try:
            flow = check_flow(document)
        except FlowError as error:
            raise DialogueError(f"the flow is not valid: {error}") from error
        await FlowRun(flow, conversation).run()

    return dialogue


def phrase_alternatives(label: str) -> list[str]:
    """A phrases key's alternatives: "no|nope" -> ["no", "nope"]."""
    return [part.strip() for part in label.split("|") if part.strip()]


def match_phrase(heard: str, phrases: dict[str, str]) -> str | None:
    """The node of the first phrase whose words ``heard`` contains (in order); else of the closest one
    within ``PHRASE_MATCH_RATIO``; else None. ``any`` matches whatever was heard."""
    words = normalise_phrase(heard)
    if not words:
        return None
    said = " ".join(words)
    best: tuple[float, str | None] = (0.0, None)
    for label, target in phrases.items():
        if label == "any":
            continue
        for alternative in phrase_alternatives(label):
            wanted = normalise_phrase(alternative)
            if wanted and any(words[i:i + len(wanted)] == wanted for i in range(len(words) - len(wanted) + 1)):
                return target
            ratio = difflib.SequenceMatcher(None, said, " ".join(wanted)).ratio()
            if ratio > best[0]:
                best = (ratio, target)
    if best[0] >= PHRASE_MATCH_RATIO:
        return best[1]
    return phrases.get("any")


class FlowRun:
    """One flow's run in one call: the variables, the path taken, how it ended."""

    def __init__(self, flow: Flow, conversation: Conversation) -> None:
        self.flow = flow
        self.conv = conversation
        request = conversation.request
        self.variables: dict[str, Any] = {
            "digits": "", "speech": "", "confidence": 0.0, "from": request.from_, "to": request.to, "call_id": conversation.call_id,
            "recording_url": "", "recording_duration": 0.0,
        }
        for name, value in flow.variables.items():
            self.variables[name] = render(value, self.variables) if isinstance(value, str) else value
        self.path: list[str] = []
        self.reason = "end"

    async def run(self) -> None:
        completed: dict[str, Any] = {}
        try:
            name: str | None = self.flow.start
            while name is not None:
                if len(self.path) >= MAX_STEPS_PER_CALL:
                    raise DialogueError(f"flow {self.flow.name} entered {MAX_STEPS_PER_CALL} nodes in one call (last: {name}); "
                                        "a loop never ends: give it an exit (a hangup, on_failure, a branch out)")
                node = self.flow.nodes[name]
                self.path.append(name)
                self.conv.emit("flow.node_entered", node=name, node_type=node.type)  # "type" is the event's own
                name = await self._enter(node)
        except CallEnded:
            self.reason = "caller hung up"
            raise
        except DialogueError as error:
            self.reason = "error"
            completed["error"] = str(error)
            raise
        except Exception as error:
            self.reason = "error"
            completed["error"] = f"internal error: {type(error).__name__}"
            raise
        finally:
            variables = {k: v for k, v in self.variables.items() if k not in _CALL_VARIABLES}
            self.conv.emit("flow.completed", flow=self.flow.name, path=list(self.path), reason=self.reason, variables=variables, **completed)

    async def _enter(self, node: Node) -> str | None:
        """Run ``node``; the name of the node to enter next, or None when the flow ends."""
        try:
            return await getattr(self, f"_{node.type}")(node)
        except CallEnded:
            raise
        except DialogueError as error:
            if str(error).startswith("flow "):
                raise
            raise DialogueError(f"flow node {node.name} ({node.type}): {error}") from error  # e.g. a speech gather without a model
        except IvrsimError as error:  # a bad voice, an unreachable audio URL: the node names the fix
            raise DialogueError(f"flow node {node.name} ({node.type}): {error}") from error

    def _text(self, text: str) -> str:
        return render(text, self.variables)

    # -- nodes -------------------------------------------------------------------------------------------

    async def _say(self, node: Node) -> str | None:
        prompt = await self.conv.prompt_say(self._text(node.get("text")), voice=node.get("voice"))
        for _ in range(node.get("loop", 1)):
            await self.conv.run(prompt)
        return node.get("next")

    async def _play(self, node: Node) -> str | None:
        prompt = await self.conv.prompt_play(self._text(node.get("url")))
        for _ in range(node.get("loop", 1)):
            await self.conv.run(prompt)
        return node.get("next")

    async def _pause(self, node: Node) -> str | None:
        await self.conv.pause(float(node.get("seconds")))
        return node.get("next")

    async def _set(self, node: Node) -> str | None:
        for name, value in node.get("variables").items():
            self.variables[name] = self._text(value) if isinstance(value, str) else value
        return node.get("next")

    async def _goto(self, node: Node) -> str | None:
        return node.get("next")

    async def _hangup(self, node: Node) -> str | None:
        self.reason = "hangup node"
        return None

    async def _prompts(self, node: Node) -> list[PlayAudio]:
        prompt = node.get("prompt")
        if prompt is None:
            return []
        if isinstance(prompt, str):
            return [await self.conv.prompt_say(self._text(prompt), voice=node.get("voice"))]
        out = []
        if "say" in prompt:
            out.append(await self.conv.prompt_say(self._text(prompt["say"]), voice=prompt.get("voice", node.get("voice"))))
        if "play" in prompt:
            out.append(await self.conv.prompt_play(self._text(prompt["play"])))
        return out

    async def _record(self, node: Node) -> str | None:
        for prompt in await self._prompts(node):
            await self.conv.run(prompt)
        result = await self.conv.record(
            max_length_s=float(node.get("max_length", 60)), silence_timeout_s=float(node.get("silence_timeout", 5)),
            finish_on_key=node.get("finish_on_key", "#"), beep=node.get("beep", True),
        )
        self.variables["recording_url"] = result.url
        self.variables["recording_duration"] = result.duration_s
        if node.get("save_as"):
            self.variables[node.get("save_as")] = result.url
        return node.get("next")

    async def _gather(self, node: Node) -> str | None:
        branches: dict[str, str] = node.get("branches") or {}
        phrases: dict[str, str] = node.get("phrases") or {}
        num_digits = node.get("num_digits")
        if num_digits is None and branches and all(len(key) == 1 for key in branches if key != "any") and "any" not in branches:
            num_digits = 1  # a menu of single keys answers at the first key; longer entries end on finish_on_key or the timeout
        hints = list(node.get("hints") or []) + [alt for label in phrases if label != "any" for alt in phrase_alternatives(label)]
        prompts = await self._prompts(node)
        retries = node.get("retries", DEFAULT_RETRIES)
        missed = ""
        for attempt in range(retries + 1):
            sorry: list[PlayAudio] = []
            if attempt > 0:
                text = node.get(missed, NO_MATCH_PROMPT if missed == "no_match" else NO_INPUT_PROMPT)
                sorry = [await self.conv.prompt_say(self._text(text), voice=node.get("voice"))]
            result = await self.conv.gather(
                [*sorry, *prompts], input_type=gather_input(node.spec), num_digits=num_digits, finish_on_key=node.get("finish_on_key", "#"),
                timeout_s=float(node.get("timeout", 5.0)), hints=hints or None,
                speech_timeout_s=float(node.get("speech_timeout")) if node.get("speech_timeout") is not None else None,
                language=node.get("language"),
            )
            if result.reason == "hangup":
                raise CallEnded("the callee hung up")
            self._heard(result)
            if not result.heard_anything:
                missed = "no_input"
                continue
            target = self._branch(result, branches, phrases)
            if target is None and not (branches or phrases):
                target = node.get("next")
                if target is None:
                    self._save(node, result)
                    return None
            if target is not None:
                self._save(node, result)
                return target
            missed = "no_match"
        self.conv.emit("flow.gather_failed", node=node.name, attempts=retries + 1, last=missed)
        if node.get("on_failure") is not None:
            return str(node.get("on_failure"))
        self.reason = f"no valid input at {node.name}"
        return None

    def _heard(self, result: GatherResult) -> None:
        self.variables["digits"] = result.digits
        self.variables["speech"] = result.speech
        self.variables["confidence"] = result.confidence

    def _save(self, node: Node, result: GatherResult) -> None:
        if node.get("save_as"):
            self.variables[node.get("save_as")] = result.digits or result.speech

    @staticmethod
    def _branch(result: GatherResult, branches: dict[str, str], phrases: dict[str, str]) -> str | None:
        if result.digits:
            return branches.get(result.digits) or branches.get("any") or (phrases.get("any") if not branches else None)
        if result.speech and phrases:
            return match_phrase(result.speech, phrases)
        if result.speech:
            return branches.get("any")
        return None

    async def _webhook(self, node: Node) -> str | None:
        try:
            answer = await self._ask(node)
        except DialogueError as error:
            if node.get("on_error") is None:
                raise
            self.conv.emit("flow.webhook_failed", node=node.name, error=str(error))
            return str(node.get("on_error"))
        allowed = set(node.get("sets") or [])
        ignored = [name for name in answer["variables"] if name not in allowed]
        for name, value in answer["variables"].items():
            if name in allowed:
                self.variables[name] = value
        if ignored:  # the app may set only what the node's sets lists (never e.g. a gathered pin)
            self.conv.emit("flow.webhook_warning", node=node.name, ignored=[name[:MAX_SHOWN_NAME_CHARS] for name in ignored[:MAX_SHOWN_IGNORED]],
                           ignored_count=len(ignored), allowed=sorted(allowed),
                           message=f"the app's answer set {len(ignored)} variable(s) not in the node's sets; they were ignored "
                                   "(list them in sets: to allow them)")
        if answer["next"] is not None:
            return answer["next"]
        return node.get("next")

    async def _ask(self, node: Node) -> dict[str, Any]:
        """The app's answer: ``{"next": node or None, "variables": {...}}``; DialogueError naming the node
        and what to fix (never the answer's content)."""
        url = self._text(node.get("url"))
        method = node.get("method", "POST")
        body = node.get("body")
        payload = render_data(body, self.variables) if body is not None else {
            "call_id": self.variables["call_id"], "from": self.variables["from"], "to": self.variables["to"], "node": node.name,
            "variables": {k: v for k, v in self.variables.items() if k not in _CALL_VARIABLES},
        }
        where = f"flow node {node.name} (webhook {method})"
        if not _is_http_url(url):  # a template rendered into a file: URL or junk: the node's own failure, not a crash
            raise DialogueError(f"{where}: the url {shown_url(url)} is not an http(s) URL; give one starting http:// or https://")
        try:
            if method == "GET":
                form = {k: v if isinstance(v, str) else json_text(v) for k, v in payload.items()}
                response = await self.conv.apps.request("GET", url, form=form, timeout_s=node.get("timeout"))
            else:
                response = await self.conv.apps.request("POST", url, json=payload, timeout_s=node.get("timeout"))
        except AppRequestError as error:
            raise DialogueError(f"{where}: {error}") from error
        if not 200 <= response.status_code < 300:
            raise DialogueError(f"{where}: the app answered HTTP {response.status_code}; answer 200 with JSON {{\"next\": node}}")
        try:
            answer = json.loads(response.text) if response.text.strip() else {}
        except ValueError:
            raise DialogueError(f"{where}: the answer is not JSON; answer a JSON object such as {{\"next\": \"menu\"}}") from None
        except RecursionError:  # arrays or objects nested thousands deep: a bad answer like any other
            raise DialogueError(f"{where}: the answer's arrays or objects are nested too deeply; answer a flat JSON object "
                                "such as {\"next\": \"menu\"}") from None
        if not isinstance(answer, dict):
            raise DialogueError(f"{where}: the answer is not a JSON object; answer e.g. {{\"next\": \"menu\", \"variables\": {{}}}}")
        target = answer.get("next")
        branch = answer.get("branch")
        branches = node.get("branches") or {}
        if target is not None and (not isinstance(target, str) or target not in self.flow.nodes):
            raise DialogueError(f"{where}: the answer's next is not a node of flow {self.flow.name}; answer one of its node names")
        if target is None and branch is not None:
            if not isinstance(branch, str) or branch not in branches:
                known = ", ".join(branches) or "none (the node has no branches)"
                raise DialogueError(f"{where}: the answer's branch is not one of the node's branches; answer one of: {known}")
            target = branches[branch]
        variables = answer.get("variables") or {}
        if not isinstance(variables, dict) or len(variables) > MAX_WEBHOOK_VARIABLES:
            raise DialogueError(f"{where}: the answer's variables must be an object of at most {MAX_WEBHOOK_VARIABLES} names")
        for name, value in variables.items():
            if not VARIABLE_NAME.match(name):
                raise DialogueError(f"{where}: the answer sets a variable whose name is not letters, digits and _; rename it")
            if isinstance(value, str) and len(value) > MAX_VALUE_CHARS or not isinstance(value, (str, int, float, bool)) and value is not None:
                raise DialogueError(f"{where}: the answer's variable {name} must be a string (up to {MAX_VALUE_CHARS} characters), "
                                    "number or true/false")
        return {"next": target, "variables": variables}


def _is_http_url(url: str) -> bool:
    """Whether ``url`` is an absolute http(s) URL with a host (what a webhook node may ask)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.host)


def json_text(value: Any) -> str:
    return json.dumps(value)
