"""pocketsphinx with its bundled en-US model: English on a fresh machine, no download.

The model is wideband, so 8 kHz telephone audio is resampled to 16 kHz. Cepstral mean normalisation is
done per utterance (``cmn="batch"``): live CMN starts from the model's default mean, far from a telephone
channel's, and lost whole phrases in the first seconds of a decoder; batch CMN recognised them. So each
utterance is decoded whole when it ends. In grammar mode, partials re-decode the utterance
so far (cheap: a grammar decodes ~40x faster than real time), at most every ``SPHINX_PARTIAL_INTERVAL_S``
and only while it is shorter than ``SPHINX_PARTIAL_MAX_S``; free transcription gives finals only (it
decodes only ~3x faster than real time; re-decoding for partials cost more than the speech itself).

Decoders take ~0.4 s to create: each engine keeps a small pool, one decoder taken per utterance and given
back. Hints become a JSGF grammar; words the dictionary lacks are dropped (digits become words first) and
logged. Word confidence is pocketsphinx's posterior ``seg.prob`` (already a probability in [0, 1]; in
grammar mode it is mostly 1.0).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from ivrsim.audio.resample import resample
from ivrsim.speech.asr.base import AsrError, EngineInfo, Recognition, Word
from ivrsim.speech.asr.gated import GatedStream, mono_float32
from ivrsim.speech.asr.phrases import split_known, unique_phrases

logger = logging.getLogger(__name__)

#: The bundled model's sample rate.
SPHINX_RATE_HZ = 16000
#: Seconds per pocketsphinx frame (``seg()`` times are in frames).
FRAME_S = 0.01
#: Idle decoders kept per engine.
POOL_IDLE_MAX = 4
#: Grammars kept per decoder (oldest removed beyond this).
GRAMMARS_PER_DECODER = 32
#: Hint lists whose grammar is remembered per engine (a speech gather's hints rarely change).
GRAMMAR_CACHE_MAX = 256
SPHINX_PARTIAL_INTERVAL_S = 0.5
SPHINX_PARTIAL_MAX_S = 4.0
DEFAULT_SEARCH = "_default"
MODEL_NAME = "pocketsphinx-en-us"


class _PooledDecoder:
    def __init__(self, decoder: Any, bestpath: bool) -> None:
        self.decoder = decoder
        self.bestpath = bestpath
        self.grammars: OrderedDict[str, None] = OrderedDict()


def _new_decoder(bestpath: bool) -> _PooledDecoder:
    """A decoder; ``bestpath`` (a lattice pass) for free transcription, whose word posteriors are then real
    confidences (without it every word says 1.0). Grammars decode without it: the pass drops words of
    longer phrases there ("talk to a person" became "talk to a")."""
    try:
        from pocketsphinx import Decoder

        return _PooledDecoder(Decoder(samprate=SPHINX_RATE_HZ, cmn="batch", bestpath=bestpath, loglevel="FATAL"), bestpath)
    except Exception as error:  # a broken install: say which package
        raise AsrError(f"pocketsphinx could not start its bundled en-US model ({error}): reinstall `pocketsphinx`") from error


class _SphinxUtterance:
    def __init__(self, engine: SphinxEngine, rate_hz: int, grammar: tuple[str, str] | None) -> None:
        self._engine = engine
        self._rate_hz = rate_hz
        self._grammar = grammar
        self._chunks: list[np.ndarray] = []
        self._n = 0
        self._partial_at_n = 0
        self._partial_text = ""

    def accept(self, samples: np.ndarray) -> None:
        x = mono_float32(samples)
        self._chunks.append(x)
        self._n += len(x)

    def partial(self) -> str:
        if self._grammar is None or self._n > SPHINX_PARTIAL_MAX_S * self._rate_hz:
            return self._partial_text
        if self._n - self._partial_at_n >= SPHINX_PARTIAL_INTERVAL_S * self._rate_hz or not self._partial_at_n:
            self._partial_at_n = self._n
            self._partial_text = " ".join(w.text for w in self._decode())
        return self._partial_text

    def final(self) -> list[Word]:
        return self._decode()

    def close(self) -> None:
        self._chunks = []

    def _decode(self) -> list[Word]:
        if not self._n:
            return []
        audio = resample(np.concatenate(self._chunks), self._rate_hz, SPHINX_RATE_HZ)
        return self._engine.decode(audio, self._grammar)


class SphinxEngine:
    """A ``SpeechEngine`` over pocketsphinx's bundled en-US model."""

    def __init__(self) -> None:
        self.info = EngineInfo("pocketsphinx", MODEL_NAME, "en-US")
        self._lock = threading.Lock()
        self._idle: dict[bool, list[_PooledDecoder]] = {False: [_new_decoder(False)], True: []}
        self._grammars: dict[tuple[str, ...], tuple[str, str] | None] = {}

    def _take(self, bestpath: bool = False) -> _PooledDecoder:
        with self._lock:
            if self._idle[bestpath]:
                return self._idle[bestpath].pop()
        return _new_decoder(bestpath)

    def _give(self, pooled: _PooledDecoder) -> None:
        with self._lock:
            if len(self._idle[pooled.bestpath]) < POOL_IDLE_MAX:
                self._idle[pooled.bestpath].append(pooled)

    def grammar(self, hints: Sequence[str] | None, repeat: bool = False) -> tuple[str, str] | None:
        """(search name, JSGF text) for ``hints``, or None for free transcription. An utterance is one of
        the phrases, or with ``repeat`` a sequence of them (a vocabulary rather than a menu's choices: a
        loop makes single choices worse, the decoder then splits "six" into "three eight")."""
        if not hints:
            return None
        key = (*(str(h) for h in hints), f"repeat={repeat}")
        with self._lock:
            if key in self._grammars:
                return self._grammars[key]
        pooled = self._take()
        try:
            phrases, dropped = split_known(unique_phrases(hints), lambda w: pooled.decoder.lookup_word(w) is not None)
        finally:
            self._give(pooled)
        if dropped:
            logger.info("hints: words not in the pocketsphinx dictionary dropped: %s", ", ".join(dropped))
        result: tuple[str, str] | None = None
        if phrases:
            body = " | ".join(" ".join(p) for p in phrases)
            jsgf = f"#JSGF V1.0;\ngrammar ivrsim;\npublic <phrase> = ( {body} ){'+' if repeat else ''} ;\n"
            result = ("g" + hashlib.sha1(jsgf.encode()).hexdigest()[:16], jsgf)
        else:
            logger.info("hints: no hint word is in the pocketsphinx dictionary: free transcription")
        with self._lock:
            if len(self._grammars) >= GRAMMAR_CACHE_MAX:
                self._grammars.clear()
            self._grammars[key] = result
        return result

    def decode(self, audio_16k: np.ndarray, grammar: tuple[str, str] | None) -> list[Word]:
        """Words of one whole utterance at 16 kHz, on a pooled decoder (batch CMN). A decoder that raised
        may be left mid-utterance: it is dropped, not given back to the pool."""
        pooled = self._take(bestpath=grammar is None)
        words = self._decode_on(pooled, audio_16k, grammar)
        self._give(pooled)
        return words

    def _decode_on(self, pooled: _PooledDecoder, audio_16k: np.ndarray, grammar: tuple[str, str] | None) -> list[Word]:
        decoder = pooled.decoder
        if grammar is None:
            decoder.activate_search(DEFAULT_SEARCH)
        else:
            name, jsgf = grammar
            if name not in pooled.grammars:
                decoder.add_jsgf_string(name, jsgf)
                pooled.grammars[name] = None
                if len(pooled.grammars) > GRAMMARS_PER_DECODER:
                    old, _ = pooled.grammars.popitem(last=False)
                    decoder.remove_search(old)
            pooled.grammars.move_to_end(name)
            decoder.activate_search(name)
        pcm = (np.clip(audio_16k, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        decoder.start_utt()
        decoder.process_raw(pcm, False, True)
        decoder.end_utt()
        if decoder.hyp() is None:
            return []
        words = []
        for seg in decoder.seg():
            text = seg.word.split("(", 1)[0]  # "word(2)": an alternative pronunciation; "(NULL)": none
            if not text or text[0] in "<[":  # <s>, </s>, <sil>, [NOISE]
                continue
            confidence = float(min(1.0, max(0.0, seg.prob)))
            words.append(Word(text, seg.start_frame * FRAME_S, (seg.end_frame + 1) * FRAME_S, confidence))
        return words

    def stream(
        self, rate_hz: int, hints: Sequence[str] | None = None, end_silence_s: float = 0.8, partials: bool = True, repeat: bool = False
    ) -> GatedStream:
        """A VAD-gated stream; ``partials=False`` skips partial results (whole-signal transcription)."""
        grammar = self.grammar(hints, repeat)
        return GatedStream(self.info, rate_hz, lambda: _SphinxUtterance(self, int(rate_hz), grammar), end_silence_s, partials=partials)

    def transcribe(self, samples: np.ndarray, rate_hz: int, hints: Sequence[str] | None = None, repeat: bool = False) -> list[Recognition]:
        stream = self.stream(rate_hz, hints, partials=False, repeat=repeat)
        results = stream.accept(samples) + stream.finish()
        return [r for r in results if r.final]
