"""Schemathesis hooks for tests/test_openapi.py (loaded by its CLI through SCHEMATHESIS_HOOKS).

Generated requests may hold any valid http(s) URL as ``webhook_url`` or ``audio_url``, and some of those are
real hosts on the internet: before each call, every URL the server would accept is pointed at the loopback
sink in IVRSIM_TEST_SINK, so that the fuzzed server never contacts anything but this machine (an analysis's
``location``, a URL or a path on this machine, always is). The value
stays schema-valid (it matches the same pattern), so no check changes meaning.

A speech-only gather is refused (422) when no installed model hears its language, which no schema can say:
its ``language`` is set to ``en-US`` (always heard), a value the schema allows. Likewise a flow must validate
(node types, references) and a ``flow_id`` name a stored flow, which a schema cannot say: a generated flow
(as JSON or YAML) becomes a small valid one, and a call's ``flow_id`` becomes that flow inline. A run-time
caller's script steps become valid ones (``_runtime_caller``).

The URL pattern comes from the test (IVRSIM_TEST_URL_PATTERN, ``ivrsim.api.schemas.HTTP_URL_PATTERN``) rather
than an import: importing ivrsim here would load the DSP stack (scipy) into the schemathesis process for
one string, seconds of the suite's time.
"""

from __future__ import annotations

import os
import re
from typing import Any

import schemathesis

URL_FIELDS = ("webhook_url", "audio_url", "url")
VALID_FLOW = {"nodes": {"bye": {"type": "hangup"}}}
VALID_FLOW_YAML = "nodes:\n  bye:\n    type: hangup\n"


def _contain(body: Any, sink: str) -> None:
    if not isinstance(body, dict):
        return
    for name in URL_FIELDS:
        value = body.get(name)
        if isinstance(value, str) and re.fullmatch(os.environ["IVRSIM_TEST_URL_PATTERN"], value):
            body[name] = sink
    if isinstance(body.get("location"), str):  # an analysis's recording: a URL or a local path, fetched later: always the sink
        body["location"] = sink
    if isinstance(body.get("flow"), dict):
        body["flow"] = dict(VALID_FLOW)
    if isinstance(body.get("yaml"), str) and body["yaml"]:  # an empty one is schema-violating: left to be refused
        body["yaml"] = VALID_FLOW_YAML
    if isinstance(body.get("flow_id"), str) and "to" in body:  # a call's stored flow: run one inline instead
        del body["flow_id"]
        if "url" not in body:
            body["flow"] = dict(VALID_FLOW)
    _contain(body.get("gather"), sink)
    gather = body.get("gather")
    if isinstance(gather, dict) and gather.get("type") == "speech":
        gather["language"] = "en-US"


def _runtime_caller(body: Any) -> None:
    """A run-time phonebook entry's steps and voice are checked as a caller script's (known step names,
    voices in the catalog), which the schema leaves open: they become a valid script and no voice."""
    if isinstance(body, dict) and isinstance(body.get("script"), dict):
        body["script"]["steps"] = [{"wait_for_prompt": {}}, {"press": {"digits": "1"}}]
    if isinstance(body, dict) and body.get("kind") == "machine":
        body.pop("voice", None)


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    _contain(case.body, os.environ["IVRSIM_TEST_SINK"])
    if case.path == "/_sim/phonebook/{number}" and case.method.upper() == "PUT":
        _runtime_caller(case.body)
