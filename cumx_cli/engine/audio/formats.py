"""The audio formats cumx reads and writes, named once.

The folder search, the ``--help`` texts and the README's lists come from here (a test holds the
README to it), so they cannot disagree. No torch, no soundfile: the command modules import this
to build their help.
"""

from __future__ import annotations

#: What libsndfile reads, as users name it (its formats are told apart by content, not suffix).
READ_FORMATS = "WAV, FLAC, OGG (Vorbis or Opus), MP3, AIFF"

#: Suffixes searched for when a folder is given as input (case-insensitive).
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"})

#: ``--format`` values, in the order the help lists them.
WRITE_FORMATS = ("wav", "flac", "mp3")
