"""How fast IVR regression suites run (issue 13's benchmark; figures, not assertions).

Usage: .venv/bin/python bench/suite_speed.py [--repeat 3] [--skip-pytest] [--json]

1. The sample flows (``samples/flows/*.yaml``) with each of their scripted callers (``samples/flows/callers``:
   happy path, wrong input, silence), in this process on the virtual clock: one ``CallEngine`` with a warm
   prompt cache (a first pass renders every prompt once; CI's second run is what the figures describe), every
   call placed at once, ``--repeat`` passes. The support menu's webhook node asks a loopback app. Figures: calls,
   call time, wall time, multiples of real time (call time / wall), flow steps (``flow.node_entered``) per
   second of wall time, and the slowest call.
2. ``pytest samples`` as a user runs it (the example test files that use the ivrsim pytest plugin), in a
   subprocess: its wall time, from start to exit, with pytest's own count of tests (target: the whole sample
   suite, dozens of calls, under 30 s on this machine).
3. Validation of a generated 500-node flow (``generated_flow``: a chain of 10-branch gathers into a loop without
   an exit, the case the loop check was once cubic on): the best of ``--repeat`` runs.

Caveats: the machine has 2 cores shared with whatever else runs (the load average is printed first).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ivrsim.testing.http import serve_json

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "flows"
NUMBER_BASE = 15557100000
FROM = "+15559876543"
#: Which callers go with which flow: a caller file's name starts with the flow's prefix; ``silent`` goes with every flow.
PREFIXES = {"bank-balance": "bank-", "appointment-confirmation": "appointment-", "support-menu": "support-"}


@dataclass
class FlowFigures:
    calls: int = 0
    passes: int = 0
    call_time_s: float = 0.0
    wall_s: float = 0.0
    steps: int = 0
    slowest_call_s: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def x_real_time(self) -> float:
        return self.call_time_s / self.wall_s if self.wall_s else 0.0

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.wall_s if self.wall_s else 0.0


#: The support menu's order lookup: every order has shipped, arriving tomorrow.
ORDERS_ROUTES = {"/orders": lambda _payload: (200, {"branch": "shipped", "variables": {"eta": "tomorrow"}})}
#: Nodes of the generated flow whose validation is timed (the most a flow may have).
VALIDATION_NODES = 500


def generated_flow(nodes: int = VALIDATION_NODES) -> dict[str, Any]:
    """A flow of ``nodes`` nodes: a chain of 10-branch gathers (each key goes on or back to the start) into a
    two-node loop without an exit, the worst case the loop check had (one error expected)."""
    chain = nodes - 2
    flow: dict[str, Any] = {}
    for i in range(chain):
        following = f"g{i + 1}" if i + 1 < chain else "loop_a"
        flow[f"g{i}"] = {"type": "gather", "prompt": "Press a key.", "branches": {str(k): following if k else "g0" for k in range(10)}}
    flow["loop_a"] = {"type": "goto", "next": "loop_b"}
    flow["loop_b"] = {"type": "goto", "next": "loop_a"}
    return {"start": "g0", "nodes": flow}


def time_validation(repeat: int) -> dict[str, Any]:
    """Wall time of ``validate_flow`` on ``generated_flow()``: the best of ``repeat`` runs, and its problems."""
    from ivrsim.flows import validate_flow

    document = generated_flow()
    best_s = float("inf")
    issues: list[Any] = []
    for _ in range(max(repeat, 1)):
        started = time.perf_counter()
        issues = validate_flow(document)
        best_s = min(best_s, time.perf_counter() - started)
    return {"nodes": len(document["nodes"]), "best_s": round(best_s, 4), "problems": len(issues)}


def sample_runs(orders_url: str) -> list[tuple[str, dict[str, Any], Path]]:
    """(flow name, flow document, caller script) for every sample flow and each of its callers."""
    from ivrsim.flows import load_flow_file

    runs = []
    for flow_file in sorted(SAMPLES.glob("*.yaml")):
        document = copy.deepcopy(load_flow_file(flow_file)[0])
        if "orders_url" in document.get("variables", {}):
            document["variables"]["orders_url"] = orders_url
        prefix = PREFIXES.get(flow_file.stem, f"{flow_file.stem}-")
        callers = [c for c in sorted((SAMPLES / "callers").glob("*.yaml")) if c.name.startswith(prefix) or c.stem == "silent"]
        runs.extend((flow_file.stem, document, caller) for caller in callers)
    return runs


async def run_flows(data_dir: Path, runs: list[tuple[str, dict[str, Any], Path]], repeat: int) -> FlowFigures:
    from ivrsim.engine.callees import Phonebook
    from ivrsim.engine.engine import CallEngine, CallRequest, EngineSettings
    from ivrsim.speech.tts import PromptCache, SpeechSynthesizer

    numbers = {f"+{NUMBER_BASE + i}": caller for i, (_, _, caller) in enumerate(runs)}
    book = Phonebook(entries={number: {"kind": "scripted", "script": str(caller)} for number, caller in numbers.items()})
    synthesizer = SpeechSynthesizer(cache=PromptCache(data_dir / "prompts"))
    figures = FlowFigures()
    async with CallEngine(EngineSettings(data_dir, clock="virtual", seed=1), phonebook=book, synthesizer=synthesizer) as engine:
        for attempt in range(repeat + 1):  # the first pass warms the prompt cache and is not counted
            started = time.perf_counter()
            records = [await engine.place(CallRequest(to=number, from_=FROM, flow=document))
                       for number, (_, document, _) in zip(numbers, runs, strict=True)]
            finals = [await engine.wait(record.id) for record in records]
            wall_s = time.perf_counter() - started
            if attempt == 0:
                continue
            figures.passes += 1
            figures.wall_s += wall_s
            for final in finals:
                events = engine.store.events(final.id)
                figures.calls += 1
                figures.call_time_s += events[-1].call_time_s
                figures.steps += sum(1 for e in events if e.type == "flow.node_entered")
                figures.statuses[final.status] = figures.statuses.get(final.status, 0) + 1
                figures.slowest_call_s = max(figures.slowest_call_s, events[-1].call_time_s)
    return figures


def run_pytest_samples() -> dict[str, Any]:
    """``pytest samples`` in a subprocess, as a user runs it: wall time and pytest's summary line."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "samples", "-q", "-p", "no:randomly"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)
    wall_s = time.perf_counter() - started
    summary = next((line for line in reversed(done.stdout.splitlines()) if re.search(r"\d+ (passed|failed|error)", line)), "")
    return {"wall_s": round(wall_s, 2), "exit_code": done.returncode, "summary": summary.strip("= ")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="timed passes over every sample flow and caller (after one warm-up pass)")
    parser.add_argument("--skip-pytest", action="store_true", help="do not time `pytest samples`")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from ivrsim.blas import one_blas_thread

    one_blas_thread()
    load = os.getloadavg()
    validation = time_validation(args.repeat)
    with serve_json(ORDERS_ROUTES) as app:
        runs = sample_runs(f"{app.url}/orders")
        with tempfile.TemporaryDirectory(prefix="suite-bench-") as temp:
            figures = asyncio.run(run_flows(Path(temp), runs, args.repeat))
    pytest_run = None if args.skip_pytest else run_pytest_samples()
    report = {
        "load_average": [round(v, 2) for v in load],
        "flows": {**asdict(figures), "x_real_time": round(figures.x_real_time, 1), "steps_per_s": round(figures.steps_per_s, 1),
                  "wall_s": round(figures.wall_s, 3), "call_time_s": round(figures.call_time_s, 2)},
        "validation": validation,
        "pytest_samples": pytest_run,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"load average at start: {', '.join(f'{v:.2f}' for v in load)}")
    f = figures
    per_pass = f.calls // max(f.passes, 1)
    print(f"sample flows: {per_pass} calls per pass ({len({r[0] for r in runs})} flows x their callers), {f.passes} timed passes, "
          f"statuses {f.statuses}")
    print(f"  call time {f.call_time_s:.1f} s in {f.wall_s:.2f} s of wall time: {f.x_real_time:.0f}x real time; "
          f"{f.wall_s / max(f.passes, 1):.2f} s a pass; slowest call {f.slowest_call_s:.1f} s of call time")
    print(f"  flow steps: {f.steps} in all, {f.steps_per_s:.0f} per second of wall time")
    print(f"validation of a generated {validation['nodes']}-node flow (gathers of 10 branches into a loop): "
          f"{validation['best_s'] * 1000:.1f} ms (best of {args.repeat}; {validation['problems']} problem expected: 1)")
    if pytest_run is not None:
        print(f"pytest samples: {pytest_run['summary'] or 'no summary'} in {pytest_run['wall_s']:.1f} s wall (exit {pytest_run['exit_code']}; "
              "target: under 30 s)")


if __name__ == "__main__":
    main()
