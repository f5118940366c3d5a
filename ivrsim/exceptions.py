"""Exceptions raised by ivrsim, as one tree; each message names the input and the fix.

    IvrsimError
    └── MediaError              audio that cannot be used
        └── AudioFileError      a file that is missing, unreadable, empty or not audio

Errors from other libraries (libsndfile, numpy) are translated into the most specific of these at the
boundary where they occur, raised ``from`` the original.
"""

from __future__ import annotations


class IvrsimError(Exception):
    """Base of every error ivrsim raises on purpose."""


class MediaError(IvrsimError):
    """Audio that cannot be used."""


class AudioFileError(MediaError):
    """An audio file that is missing, unreadable, empty or not audio; ``path`` names it."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem
