"""Talk-off on real recordings: no digit in public speech, music and noises (issue 18).

The excerpts in tests/data/talkoff (see SOURCES.md there) are a few minutes of the corpus that
bench/dtmf_real_corpus.py builds from Debian packages: every stretch where ivrsim, multimon-ng or spandsp
found a false digit in the whole corpus, plus a spread of speech in several languages, music and animal
sounds. Nobody pressed a key in any of them, so any digit is a false one, in batch and in streaming alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ivrsim.audio.dtmf_receiver import DtmfDigit, DtmfReceiver, detect_dtmf
from ivrsim.media.files import read_audio_file

RATE_HZ = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz, as a call delivers audio
EXCERPTS = Path(__file__).parent / "data" / "talkoff"
FILES = sorted(EXCERPTS.glob("*.flac"))
FALSE_DIGIT_FILES = [path for path in FILES if path.name.startswith("falsedigit_")]
#: Leading samples dropped to move the audio against the receiver's 51-sample half-blocks: several of
#: these false digits appear at one block phase and not at another, and a call may bring either.
PHASE_SHIFTS_SAMPLES = (17, 34)


def _load(path: Path) -> np.ndarray:
    clip = read_audio_file(path)
    assert clip.rate_hz == RATE_HZ, f"{path.name}: expected {RATE_HZ} Hz, found {clip.rate_hz} Hz"
    assert clip.channels == 1, f"{path.name}: expected mono, found {clip.channels} channels"
    return clip.samples[:, 0]


def _describe(digits: list[DtmfDigit]) -> str:
    return "; ".join(str(d.as_dict()) for d in digits)


def test_the_excerpts_cover_speech_music_noise_and_every_false_digit_stretch() -> None:
    kinds = {path.name.split("_", 1)[0] for path in FILES}
    assert {"speech", "music", "noise", "falsedigit"} <= kinds, f"found only {sorted(kinds)} in {EXCERPTS}"
    listed = (EXCERPTS / "SOURCES.md").read_text()
    missing = [path.name for path in FILES if path.name not in listed]
    assert not missing, f"excerpts without a line in SOURCES.md: {missing}"


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
def test_no_digit_in_real_recording(path: Path) -> None:
    samples = _load(path)
    batch = detect_dtmf(samples, RATE_HZ)
    receiver = DtmfReceiver(RATE_HZ)
    streamed: list[DtmfDigit] = []
    for begin in range(0, len(samples), FRAME_SAMPLES):
        streamed.extend(receiver.feed(samples[begin : begin + FRAME_SAMPLES]))
    streamed.extend(receiver.flush())
    assert not batch and not streamed, (
        f"{path.name} (a real recording where nobody pressed a key): "
        f"batch found {len(batch)} digit(s): {_describe(batch)}; streamed in 20 ms frames found {len(streamed)}: {_describe(streamed)}"
    )


@pytest.mark.parametrize("path", FALSE_DIGIT_FILES, ids=[path.stem for path in FALSE_DIGIT_FILES])
def test_no_digit_at_other_block_phases(path: Path) -> None:
    samples = _load(path)
    found = {shift: detect_dtmf(samples[shift:], RATE_HZ) for shift in PHASE_SHIFTS_SAMPLES}
    assert not any(found.values()), f"{path.name}: " + "; ".join(
        f"{shift} samples later: {_describe(digits)}" for shift, digits in found.items() if digits
    )
