"""The package's public surface is pinned: changing it is a decision, not an accident."""

import ivrsim
import ivrsim.audio


def test_public_names() -> None:
    assert sorted(ivrsim.__all__) == sorted(
        [
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
    )
    assert sorted(ivrsim.audio.__all__) == sorted(
        ["DtmfDigit", "DtmfKey", "DtmfReceiver", "DtmfThresholds", "DtmfToneSpec", "detect_dtmf", "generate_dtmf"]
    )
    for name in ivrsim.__all__:
        assert hasattr(ivrsim, name)
