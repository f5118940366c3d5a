"""Pure DSP on numpy arrays, no I/O: the DTMF receiver and generator, G.711, levels, resampling."""

from ivrsim.audio.dtmf_generator import DtmfToneSpec, generate_dtmf
from ivrsim.audio.dtmf_keys import DtmfKey
from ivrsim.audio.dtmf_receiver import DtmfDigit, DtmfReceiver, DtmfThresholds, detect_dtmf

__all__ = ["DtmfDigit", "DtmfKey", "DtmfReceiver", "DtmfThresholds", "DtmfToneSpec", "detect_dtmf", "generate_dtmf"]
