"""The audio formats cumx reads and writes, named once.

The folder search, the ``--help`` texts and the README's lists come from here (a test holds the
README to it), so they cannot disagree. No torch, no soundfile, no PyAV: the command modules
import this to build their help.

Which library decodes a file is decided by its content, never by these suffixes: libsndfile
(exact and fast) for WAV, FLAC, OGG, MP3 and AIFF, FFmpeg through PyAV for everything else (see
:mod:`cumx_cli.engine.audio.io`). The suffixes only say which files a folder search picks up.
"""

from __future__ import annotations

#: What cumx reads, as users name it.
READ_FORMATS = ("WAV, FLAC, OGG (Vorbis or Opus), MP3, AIFF, and through FFmpeg M4A (AAC or "
                "ALAC), AAC, WMA, AC-3, Matroska audio and the audio of video files (MP4, MKV, "
                "WebM, MOV, ...)")

#: Suffixes that libsndfile's formats go by.
SNDFILE_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"})
#: Audio-only containers and streams that FFmpeg reads.
FFMPEG_AUDIO_SUFFIXES = frozenset({
    ".m4a", ".m4b", ".aac", ".caf", ".mka", ".weba", ".wma", ".ac3", ".eac3", ".dts", ".mp2",
    ".amr", ".ape", ".wv", ".tta", ".mpc", ".spx",
})
#: Video containers: separated (their first audio stream) when named as an input; in a folder,
#: only when asked for (``separate --ext mp4,mkv``).
VIDEO_SUFFIXES = frozenset({
    ".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi", ".wmv", ".asf", ".flv", ".ts", ".m2ts",
    ".mts", ".mpg", ".mpeg", ".vob", ".3gp", ".ogv",
})
#: Suffixes searched for when a folder is given as input (case-insensitive).
AUDIO_SUFFIXES = SNDFILE_SUFFIXES | FFMPEG_AUDIO_SUFFIXES
#: Suffixes read as stems in a training data set: the audio ones, and ``.mp4`` (stems exported
#: as AAC in MP4; MUSDB18's ``.stem.mp4`` files are recognised before this list is consulted).
DATASET_SUFFIXES = AUDIO_SUFFIXES | {".mp4"}

#: ``--format`` values, in the order the help lists them.
WRITE_FORMATS = ("wav", "flac", "mp3", "ogg", "opus", "m4a")
#: The ones written through a lossy encoder, which take ``--bitrate``.
LOSSY_FORMATS = ("mp3", "ogg", "opus", "m4a")
#: ``--bitrate`` defaults, kbps (why each: :class:`cumx_cli.engine.audio.encode.Codec`).
DEFAULT_BITRATES = {"mp3": 320, "ogg": 192, "opus": 160, "m4a": 256}
#: The defaults as the help says them.
BITRATE_DEFAULTS = "default: " + ", ".join(f"{fmt} {kbps}" for fmt, kbps in DEFAULT_BITRATES.items())
