"""Which audio container bytes hold, by their content (never the name): for refusing junk before a decoder
sees it, and for knowing when libsndfile will run libmpg123 (which prints notes to C's ``stderr``)."""

from __future__ import annotations

#: Bytes of a file's start that ``may_be_mpeg`` needs.
HEAD_BYTES = 16


def container_magic(head: bytes) -> str | None:
    """The container whose magic number ``head`` (a file's first 16 bytes) starts with: WAV, W64, AIFF,
    FLAC, OGG, AU or CAF; None for anything else, MP3 included (MPEG audio has no magic number)."""
    head = head[:HEAD_BYTES]
    if (head[:4] == b"RIFF" and head[8:12] == b"WAVE") or head[:4] in (b"RIFX", b"RF64"):
        return "WAV"
    if head[:4] == b"riff" and head[4:8] == b"\x2e\x91\xcf\x11":
        return "W64"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    for magic, name in ((b"fLaC", "FLAC"), (b"OggS", "OGG"), (b".snd", "AU"), (b"caff", "CAF")):
        if head.startswith(magic):
            return name
    return None


def may_be_mpeg(head: bytes) -> bool:
    """True unless ``head`` starts a container with a magic number: libsndfile hands what it does not
    recognise to libmpg123, so an unknown file may reach it as much as an MP3 does."""
    return container_magic(head) is None


def sniff_audio(data: bytes) -> str | None:
    """The audio container ``data`` starts with ("WAV", "MP3", ...), or None when it is none that
    libsndfile decodes. Checked before decoding, so that junk never reaches a decoder that prints."""
    magic = container_magic(data)
    if magic is not None:
        return magic
    head = data[:HEAD_BYTES]
    if head[:3] == b"ID3" and len(data) >= 10:
        size = (data[6] & 0x7F) << 21 | (data[7] & 0x7F) << 14 | (data[8] & 0x7F) << 7 | (data[9] & 0x7F)
        return "MP3" if _mpeg_frames_at(data, 10 + size + (10 if data[5] & 0x10 else 0)) else None
    return "MP3" if _mpeg_frames_at(data, 0) else None


#: MPEG audio bitrates in kbit/s by (version is MPEG-1, layer) and index; sample rates by version.
_BITRATES_KBPS = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_RATES_HZ = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mpeg_frame_length(header: bytes) -> int | None:
    """Length in bytes of the MPEG audio frame whose 4-byte header this is, or None if it is not one."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version, layer_bits = (header[1] >> 3) & 3, (header[1] >> 1) & 3
    bitrate_index, rate_index, padding = header[2] >> 4, (header[2] >> 2) & 3, (header[2] >> 1) & 1
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    layer = 4 - layer_bits
    bitrate = _BITRATES_KBPS[(version == 3, layer)][bitrate_index] * 1000
    rate_hz = _MPEG_RATES_HZ[version][rate_index]
    if layer == 1:
        return (12 * bitrate // rate_hz + padding) * 4
    per_frame = 144 if layer == 2 or version == 3 else 72
    return per_frame * bitrate // rate_hz + padding


def _mpeg_frames_at(data: bytes, offset: int, frames: int = 3) -> bool:
    """True when ``frames`` consecutive MPEG audio frame headers follow each other from ``offset`` (a
    stream shorter than that counts when every frame it has is whole)."""
    for _ in range(frames):
        length = _mpeg_frame_length(data[offset : offset + 4])
        if length is None:
            return False
        offset += length
        if offset >= len(data):
            return offset == len(data)
    return True
