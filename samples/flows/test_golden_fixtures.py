"""Golden fixtures: a whole call (its events and its dual-channel recording) kept under ``golden/`` beside
this file and compared on every run, so a changed prompt, a broken branch or a different timing fails the
suite with a readable diff (and both WAVs kept for listening).

Record (or re-record after an intended change) with:

    pytest samples/flows/test_golden_fixtures.py --ivrsim-update-golden

then commit ``samples/flows/golden/``. A later run compares: events identical (ids, wall times and URLs left
out), audio of the same length within 20 ms and correlated.

Why this module has a server of its own: espeak-ng keeps some state between the prompts it renders in one
process (ivrsim/speech/tts.py), so a prompt's exact length depends on what the process spoke before it,
i.e. on the order the other tests ran in. Here calls run in a fresh worker process that speaks only this
module's prompts, in the flow's order, so each run renders them identically.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ivrsim.testing.plugin import IvrsimClient, IvrsimServer

HERE = Path(__file__).parent
NUMBER = "+15557300005"


@pytest.fixture(scope="module")
def ivrsim_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IvrsimServer]:
    """The plugin's ``ivrsim_server``, overridden for this module: the same virtual clock and webhook
    receiver, but calls (and their prompts) run in a worker process of their own."""
    from ivrsim.api.server import BackgroundServer
    from ivrsim.settings import Settings
    from ivrsim.webhooks.receiver import WebhookReceiver

    key = "test_" + secrets.token_hex(8)
    data_dir = tmp_path_factory.mktemp("golden-server")
    settings = Settings(api_key=key, port=0, data_dir=data_dir, clock="virtual", workers=1)
    with WebhookReceiver() as receiver, BackgroundServer(settings) as server:
        yield IvrsimServer(server.base_url, key, receiver, data_dir)


def test_bank_balance_happy_path_matches_its_golden_fixture(ivrsim: IvrsimClient) -> None:
    script = yaml.safe_load((HERE / "callers" / "bank-happy.yaml").read_text(encoding="utf-8"))
    ivrsim.callee(NUMBER, {"kind": "scripted", "script": script})
    call = ivrsim.call(to=NUMBER, flow_file=HERE / "bank-balance.yaml")
    assert call.status == "completed", call.reason
    ivrsim.assert_golden(call)
