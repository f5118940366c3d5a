"""ivrsim: a local, offline IVR simulator and telephony emulator.

The public names of the audio layer are re-exported here; see ``ivrsim.audio``.
"""

from ivrsim.audio import DtmfDigit, DtmfKey, DtmfReceiver, DtmfThresholds, DtmfToneSpec, detect_dtmf, generate_dtmf
from ivrsim.exceptions import AudioFileError, IvrsimError, MediaError

__version__ = "0.1.0"

__all__ = [
    "AudioFileError",
    "DtmfDigit",
    "DtmfKey",
    "DtmfReceiver",
    "DtmfThresholds",
    "DtmfToneSpec",
    "IvrsimError",
    "MediaError",
    "__version__",
    "detect_dtmf",
    "generate_dtmf",
]
