"""One Canonical call on the dashboard: where its recording is on this machine (resolved by the server from
what the call was submitted with, never a path a browser sends) and its analysis as marks on the waveform:
turns per speaker, the latency gaps between them, interruptions, dead air.

No DSP here: the marks are the analysis result's own numbers, rearranged for drawing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ivrsim.api.deps import Services
from ivrsim.api.errors import HTTP_404_NOT_FOUND, HTTP_409_CONFLICT, ApiError
from ivrsim.media.audio_url import AudioUrlError


def canonical_recording(services: Services, call_id: str) -> Path:
    """The recording file a Canonical call was analysed from: its stored upload, its local path inside the
    media roots, or its URL's body in the media cache. 404 for an unknown call; 409 when the file is not
    (or no longer) on this machine."""
    store = services.engine.store
    if store.canonical_call(call_id) is None:
        raise ApiError(HTTP_404_NOT_FOUND, "not_found", f"no Canonical call {call_id!r}; the analyses page at /ui/analyses lists them", "call_id")
    job_input = store.canonical_job_input(call_id) or {}
    path: Path | None = None
    if job_input.get("upload"):
        folder = Path(services.engine.settings.recordings_folder).resolve()
        candidate = (folder / str(job_input["upload"])).resolve()
        path = candidate if candidate.is_relative_to(folder) else None
    elif job_input.get("location"):
        try:
            path = services.engine.loader.local_file(str(job_input["location"]))
        except AudioUrlError:
            path = None
    if path is None or not path.is_file():
        raise ApiError(HTTP_409_CONFLICT, "recording_not_here", f"call {call_id}'s recording is not on this server (not in the media roots, "
                       "the uploads or the media cache), so it has no waveform; its numbers are on the page", "call_id")
    return path


def _turns(result: dict[str, Any]) -> list[dict[str, Any]]:
    speakers = result.get("speakers") or {}
    turns = []
    for speaker in ("assistant", "user"):
        facts = speakers.get(speaker) or {}
        for turn in facts.get("turn_list") or []:
            turns.append({"speaker": speaker, "channel": facts.get("channel"), "start_s": turn["start_s"], "end_s": turn["end_s"]})
    return sorted(turns, key=lambda t: (t["start_s"], t["speaker"]))


def _latency_gaps(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Where each turn latency sits: from the end of the user's turn to the start of the assistant's turn
    that answers it, by the analysis's own rule (ivrsim/analysis/timing.py ``_latencies_s``): the last user
    turn ended by then, not when the user is still speaking, nor when the assistant already spoke since."""
    speakers = result.get("speakers") or {}
    assistant = [(t["start_s"], t["end_s"]) for t in (speakers.get("assistant") or {}).get("turn_list") or []]
    user = [(t["start_s"], t["end_s"]) for t in (speakers.get("user") or {}).get("turn_list") or []]
    gaps = []
    for k, (start, _end) in enumerate(assistant):
        ended = [j for j, (_s, end) in enumerate(user) if end <= start]
        if not ended:
            continue
        j = ended[-1]
        if j + 1 < len(user) and user[j + 1][0] < start:
            continue
        if k > 0 and assistant[k - 1][1] > user[j][1]:
            continue
        gaps.append({"start_s": user[j][1], "end_s": start, "ms": round((start - user[j][1]) * 1000)})
    return gaps


def analysis_marks(result: dict[str, Any] | None) -> dict[str, Any]:
    """What the waveform draws over a Canonical call's recording, in recording seconds."""
    if not result:
        return {"turns": [], "latencies": [], "interruptions": [], "dead_air": []}
    turns = _turns(result)
    return {
        "assistant_channel": ((result.get("speakers") or {}).get("assistant") or {}).get("channel"),
        "turns": turns,
        "latencies": _latency_gaps(result),
        "interruptions": [{"at_s": e["at_s"], "interrupter": e["interrupter"], "overlap_s": e.get("overlap_s")}
                          for e in (result.get("interruptions") or {}).get("events") or []],
        "dead_air": [{"start_s": e["start_s"], "end_s": e["end_s"]} for e in (result.get("dead_air") or {}).get("events") or []],
    }
