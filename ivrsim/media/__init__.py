"""Loading audio: local files now; ``audio_url`` over http(s) with caching comes with the media issue."""

from ivrsim.media.files import AudioClip, read_audio_file, write_audio_file

__all__ = ["AudioClip", "read_audio_file", "write_audio_file"]
