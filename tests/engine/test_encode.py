"""The lossy writers (MP3, Ogg Vorbis, Opus, M4A): exact lengths as decoders see them, quality at
the default bitrates, bitrates, tags, channels, atomic writes and one-line errors."""

from __future__ import annotations

import builtins
import errno
import io
import os
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from cumx_cli.engine.audio import encode
from cumx_cli.engine.audio.encode import (
    CODECS,
    ENCODED_FORMATS,
    Codec,
    EncodedWriter,
    check_bitrate,
    read_tags,
    stem_tags,
    vorbis_quality,
)
from cumx_cli.engine.audio.resample import resample
from cumx_cli.engine.errors import AudioIOError, ConfigError
from tests.conftest import music
from tests.corpus import WRITES_ANYWHERE

RATE = 44100
#: 1 s and 7 samples: a multiple of no codec's frame (1152, 1024, 960 or Vorbis' 2048).
LENGTHS = (RATE + 7, 3 * RATE // 2 + 1)
#: The SNR each codec reaches on :func:`signal` at its default bitrate, less 3-4 dB. Measured
#: over LENGTHS, mono and stereo: MP3 21.5-22.9, Vorbis 21.0-21.7, Opus 16.0-19.4 (17.7 from
#: 44.1 kHz), AAC 19.9-31.6 dB. Perceptual codecs spend few bits on the white-noise part,
#: which the SNR counts in full.
MIN_SNR = {"mp3": 18.0, "ogg": 17.5, "opus": 13.0, "m4a": 16.0}
TAGS = {"title": "Song (vocals)", "artist": "Ärtist", "album": "Album"}


def signal(frames: int, channels: int = 2, rate: int = RATE) -> torch.Tensor:
    """Tones, bass and noise, (channel, time) float32."""
    seconds = (frames + 1) / rate
    return torch.from_numpy(music(seconds, channels=channels, rate=rate)[:frames].T.copy())


def write(path: Path, x: torch.Tensor, rate: int = RATE, block: int = 10_007, **kwargs: object
          ) -> Path:
    with EncodedWriter(path, rate, x.shape[0], path.suffix[1:], **kwargs) as writer:  # type: ignore[arg-type]
        for start in range(0, x.shape[1], block):
            writer.write(x[:, start : start + block])
        writer.commit()
    return path


def decode(path: Path) -> tuple[np.ndarray, int]:
    """Every sample FFmpeg decodes, as (channel, time) float32, and the rate."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        parts = []
        for frame in container.decode(stream):
            data = frame.to_ndarray()
            parts.append(data if frame.format.is_planar else data.reshape(-1, stream.channels).T)
        return np.concatenate(parts, axis=1).astype(np.float32), stream.rate


def snr(reference: np.ndarray, estimate: np.ndarray) -> float:
    estimate = estimate[:, : reference.shape[1]]
    return float(10 * np.log10((reference**2).sum() / ((reference - estimate) ** 2).sum()))


def metadata(path: Path) -> dict[str, str]:
    """Container and stream tags as PyAV reads them (Ogg keeps its comments on the stream)."""
    with av.open(str(path)) as container:
        merged = {**container.streams.audio[0].metadata, **container.metadata}
    return {key.lower(): value for key, value in merged.items()}


# -- length and quality --


@pytest.mark.parametrize("frames", LENGTHS)
@pytest.mark.parametrize("fmt", ["mp3", "ogg", "opus"])
def test_the_decoded_length_is_exactly_the_written_one(tmp_path: Path, fmt: str, frames: int) -> None:
    """MP3's LAME header, Ogg's pre-skip and last granule position: FFmpeg and the codecs' own
    libraries (libmpg123, libvorbis, libopus, through libsndfile) give back exactly the samples
    written, aligned, at the default bitrate's quality. (Opus at its own rate, 48 kHz.)"""
    rate = 48000 if fmt == "opus" else RATE
    x = signal(frames, rate=rate)
    path = write(tmp_path / f"a.{fmt}", x, rate)
    y, decoded_rate = decode(path)
    assert decoded_rate == rate and y.shape == x.shape
    assert snr(x.numpy(), y) > MIN_SNR[fmt]
    z, sf_rate = sf.read(str(path), dtype="float32", always_2d=True)
    assert sf_rate == rate and z.shape == (frames, 2)


@pytest.mark.parametrize("frames", LENGTHS)
def test_m4a_records_the_exact_length_and_ffmpeg_keeps_only_the_end_padding(tmp_path: Path,
                                                                            frames: int) -> None:
    """The edit list skips the priming and ends at the last sample written (time scale = the
    sample rate). FFmpeg honours its start, not its end: it decodes the audio aligned, then
    up to one AAC frame (1024 samples) of padding; a gapless decoder cuts at the duration."""
    x = signal(frames)
    path = write(tmp_path / "a.m4a", x)
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.duration is not None and stream.time_base is not None
        assert stream.duration * stream.time_base == Fraction(frames, RATE)  # exactly
    y, rate = decode(path)
    assert rate == RATE and y.shape[0] == 2
    assert frames <= y.shape[1] < frames + 1024
    assert snr(x.numpy(), y[:, :frames]) > MIN_SNR["m4a"]


@pytest.mark.parametrize("frames", [RATE + 7, 12_345])
def test_opus_resamples_44100_to_48000_and_keeps_the_duration(tmp_path: Path, frames: int) -> None:
    x = signal(frames)
    with EncodedWriter(tmp_path / "a.opus", RATE, 2, "opus") as writer:
        assert writer.output_rate == 48000
        writer.write(x)
        writer.commit()
    y, rate = decode(tmp_path / "a.opus")
    assert rate == 48000
    assert y.shape[1] == round(frames * 48000 / RATE)
    assert abs(y.shape[1] / 48000 - frames / RATE) <= 0.5 / 48000
    assert snr(resample(x, RATE, 48000).numpy(), y) > MIN_SNR["opus"]  # aligned: no delay added


@pytest.mark.parametrize("fmt", ENCODED_FORMATS)
def test_blocks_of_any_size_encode_as_one(tmp_path: Path, fmt: str) -> None:
    """The writer streams: how the samples are cut into blocks changes nothing decoded (but
    for libvorbis, whose first 127 samples differ a little, 60 dB down, when they come in
    several writes)."""
    x = signal(RATE // 2 + 3)
    whole, _ = decode(write(tmp_path / f"whole.{fmt}", x, block=x.shape[1]))
    parts, _ = decode(write(tmp_path / f"parts.{fmt}", x, block=997))
    if fmt == "ogg":
        assert whole.shape == parts.shape and snr(whole, parts) > 50
        np.testing.assert_array_equal(whole[:, 128:], parts[:, 128:])
    else:
        np.testing.assert_array_equal(whole, parts)


def test_write_frames_takes_time_first(tmp_path: Path) -> None:
    x = signal(5000)
    with EncodedWriter(tmp_path / "a.mp3", RATE, 2, "mp3") as writer:
        writer.write_frames(x.T)
        writer.commit()
    np.testing.assert_array_equal(decode(tmp_path / "a.mp3")[0], decode(write(tmp_path / "b.mp3", x))[0])


# -- bitrate --


@pytest.mark.parametrize(("fmt", "low", "high"), [("mp3", 128, 320), ("ogg", 96, 224),
                                                  ("opus", 64, 160), ("m4a", 96, 256)])
def test_the_bitrate_sets_the_file_size(tmp_path: Path, fmt: str, low: int, high: int) -> None:
    """Roughly in proportion (measured: 0.84-1.00 of it; Vorbis and Opus are VBR, and their
    headers weigh more at low rates)."""
    x = signal(RATE)
    small = write(tmp_path / f"low.{fmt}", x, bitrate=low).stat().st_size
    large = write(tmp_path / f"high.{fmt}", x, bitrate=high).stat().st_size
    assert 0.7 < (large / small) / (high / low) < 1.3
    x = x[:, :4410]
    default = write(tmp_path / f"default.{fmt}", x).stat().st_size
    assert default == write(tmp_path / f"same.{fmt}", x, bitrate=CODECS[fmt].default_kbps).stat().st_size


def test_the_defaults_and_ranges() -> None:
    assert {fmt: check_bitrate(fmt, None) for fmt in ENCODED_FORMATS} == {
        "mp3": 320, "ogg": 192, "opus": 160, "m4a": 256}
    assert check_bitrate("wav", None) is None and check_bitrate("opus", 6) == 6
    assert vorbis_quality(192) == 6.0 and vorbis_quality(64) == 0.0 and vorbis_quality(500) == 10.0


@pytest.mark.parametrize(("fmt", "kbps", "expected"), [
    ("opus", 5, "bitrate 5 kbps is out of range for opus (Opus): 6-510 kbps"),
    ("opus", 600, "bitrate 600 kbps is out of range for opus (Opus): 6-510 kbps"),
    ("mp3", 384, "bitrate 384 kbps is out of range for mp3 (MP3): 32-320 kbps"),
    ("ogg", 32, "bitrate 32 kbps is out of range for ogg (Vorbis): 64-500 kbps"),
    ("m4a", 0, "bitrate 0 kbps is out of range for m4a (AAC): 32-512 kbps"),
    ("flac", 320, "bitrate applies to the lossy formats (mp3, ogg, opus, m4a), not to flac"),
])
def test_a_bad_bitrate_is_a_config_error(tmp_path: Path, fmt: str, kbps: int, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_bitrate(fmt, kbps)
    assert str(caught.value) == expected and caught.value.field == "bitrate"
    if fmt in ENCODED_FORMATS:
        with pytest.raises(ConfigError):
            EncodedWriter(tmp_path / f"a.{fmt}", RATE, 2, fmt, bitrate=kbps)  # type: ignore[arg-type]
        assert list(tmp_path.iterdir()) == []


def test_mono_opus_above_256_kbps_is_capped(tmp_path: Path) -> None:
    """libopus takes at most 256 kbps a channel; a mono stem is written at that."""
    with EncodedWriter(tmp_path / "a.opus", 48000, 1, "opus", bitrate=510) as writer:
        assert writer.bitrate == 256
        writer.write(signal(4800, channels=1, rate=48000))
        writer.commit()


# -- tags and channels --


@pytest.mark.parametrize("fmt", ENCODED_FORMATS)
def test_tags_are_written_where_the_format_keeps_them(tmp_path: Path, fmt: str) -> None:
    path = write(tmp_path / f"a.{fmt}", signal(4410), tags={**TAGS, "comment": "not copied"})
    tags = metadata(path)
    assert {key: tags.get(key) for key in TAGS} == TAGS
    assert "comment" not in tags
    assert read_tags(path) == TAGS


@pytest.mark.parametrize("fmt", ENCODED_FORMATS)
def test_mono_stays_mono(tmp_path: Path, fmt: str) -> None:
    rate = 48000 if fmt == "opus" else RATE
    x = signal(RATE + 7, channels=1, rate=rate)
    y, _ = decode(write(tmp_path / f"a.{fmt}", x, rate))
    assert y.shape[0] == 1
    assert snr(x.numpy(), y[:, : x.shape[1]]) > MIN_SNR[fmt]


def test_stem_tags_name_the_source() -> None:
    assert stem_tags({"title": "Song", "artist": "A", "album": ""}, "vocals", "01 song") == {
        "title": "Song (vocals)", "artist": "A"}
    assert stem_tags({}, "bass", "01 song") == {"title": "01 song (bass)"}


@pytest.mark.parametrize("container", ["WAV", "FLAC"])
@pytest.mark.parametrize("frames", [100, 3_000_000])
def test_input_tags_are_read_from_wav_and_flac(tmp_path: Path, container: str, frames: int) -> None:
    """Also from a file of 12 MB of samples (more than FFmpeg's default 5 MB probe: the tags
    come with the header, which read_tags reads without probing the stream)."""
    path = tmp_path / f"in.{container.lower()}"
    with sf.SoundFile(str(path), "w", RATE, 2, format=container) as f:
        f.title, f.artist, f.album = "Tïtle", "Artist", "Album"
        f.write(np.zeros((frames, 2), np.float32))
    assert read_tags(path) == {"title": "Tïtle", "artist": "Artist", "album": "Album"}
    assert read_tags(tmp_path / "missing.wav") == {}


def test_wav_tags_after_12_mb_of_samples_are_read(tmp_path: Path) -> None:
    """A LIST INFO chunk after the data chunk (where many tools put it), 12 MB into the file:
    past FFmpeg's default 5 MB probe, which read_tags skips (the tags come with the header)."""
    path = tmp_path / "in.wav"
    sf.write(path, np.zeros((3_000_000, 2), np.float32), RATE, subtype="PCM_16")

    def entry(tag: bytes, text: str) -> bytes:
        value = text.encode() + b"\0"
        return tag + struct.pack("<I", len(value)) + value + b"\0" * (len(value) % 2)

    info = b"INFO" + entry(b"INAM", "Title") + entry(b"IART", "Artist") + entry(b"IPRD", "Album")
    data = bytearray(path.read_bytes()) + b"LIST" + struct.pack("<I", len(info)) + info
    data[4:8] = struct.pack("<I", len(data) - 8)  # the RIFF size
    path.write_bytes(bytes(data))
    assert data.find(b"LIST") > 12_000_000
    assert read_tags(path) == {"title": "Title", "artist": "Artist", "album": "Album"}


def test_out_of_range_and_nan_samples_are_clamped(tmp_path: Path) -> None:
    x = 3.0 * signal(RATE // 2)
    x[:, 100:200] = float("nan")
    for fmt in ENCODED_FORMATS:
        y, _ = decode(write(tmp_path / f"a.{fmt}", x, 48000 if fmt == "opus" else RATE))
        assert np.isfinite(y).all() and np.abs(y).max() < 1.25, fmt


# -- atomic writes and errors --


@pytest.mark.parametrize("fmt", ENCODED_FORMATS)
def test_the_final_path_appears_only_on_commit(tmp_path: Path, fmt: str) -> None:
    final = tmp_path / "out" / f"a.{fmt}"
    with EncodedWriter(final, RATE, 2, fmt) as writer:  # type: ignore[arg-type]
        writer.write(signal(20_000))
        assert not final.exists() and writer.tmp.exists() and writer.tmp.name.startswith(".a.")
        writer.commit()
    assert final.exists() and list(final.parent.iterdir()) == [final]


@pytest.mark.parametrize("fmt", ENCODED_FORMATS)
def test_abort_and_errors_leave_no_file(tmp_path: Path, fmt: str) -> None:
    writer = EncodedWriter(tmp_path / f"a.{fmt}", RATE, 2, fmt)  # type: ignore[arg-type]
    writer.write(signal(20_000))
    writer.abort()
    writer.abort()  # twice is harmless
    with pytest.raises(RuntimeError), EncodedWriter(tmp_path / f"b.{fmt}", RATE, 2, fmt):  # type: ignore[arg-type]
        raise RuntimeError("the separation failed")
    assert list(tmp_path.iterdir()) == []


def _one_line(error: pytest.ExceptionInfo[AudioIOError]) -> str:
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize("fmt", ENCODED_FORMATS)
def test_a_folder_below_a_file_is_one_line(tmp_path: Path, fmt: str) -> None:
    (tmp_path / "file").write_text("in the way\n")
    with pytest.raises(AudioIOError) as caught:
        EncodedWriter(tmp_path / "file" / "out" / f"a.{fmt}", RATE, 2, fmt)  # type: ignore[arg-type]
    assert _one_line(caught).startswith(f"{tmp_path / 'file' / 'out'}: cannot write there (")


@pytest.mark.skipif(WRITES_ANYWHERE, reason="root writes into read-only folders")
@pytest.mark.parametrize("fmt", ENCODED_FORMATS)
def test_a_read_only_folder_is_one_line(tmp_path: Path, fmt: str) -> None:
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    with pytest.raises(AudioIOError) as caught:
        EncodedWriter(folder / f"a.{fmt}", RATE, 2, fmt)  # type: ignore[arg-type]
    assert _one_line(caught) == f"{folder}: cannot write there (Permission denied)"


class _FullDiskFile(io.RawIOBase):
    """A file on a full disk: it opens, seeks and tells, and no byte gets written."""

    def __init__(self, file: io.BufferedWriter) -> None:
        self._file = file

    def write(self, data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self._file.close()
        super().close()


def _fill_up(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make writes below ``folder`` fail with ENOSPC, through ``open`` (PyAV's muxers write to a
    file object of the writer) and libsndfile (Vorbis). Unlike ``tests.corpus.fill_up``, files
    still seek, as on a real full disk: the MP4 muxer refuses unseekable output up front."""
    real_open, real_sf_write = builtins.open, sf.SoundFile.write

    def below(name: object) -> bool:
        return isinstance(name, (str, os.PathLike)) and Path(name).parent == folder

    def open_(file: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        handle = real_open(file, mode, *args, **kwargs)  # type: ignore[call-overload]
        return _FullDiskFile(handle) if below(file) and "w" in mode else handle

    def sf_write(self: sf.SoundFile, data: object) -> None:
        if below(self.name):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_sf_write(self, data)

    monkeypatch.setattr("builtins.open", open_)
    monkeypatch.setattr(sf.SoundFile, "write", sf_write)


@pytest.mark.parametrize("fmt", ENCODED_FORMATS)
def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    fmt: str) -> None:
    final = tmp_path / f"a.{fmt}"
    _fill_up(monkeypatch, tmp_path)
    with pytest.raises(AudioIOError) as caught:  # noqa: PT012 - the failure may come at either
        with EncodedWriter(final, RATE, 2, fmt) as writer:  # type: ignore[arg-type]
            writer.write(signal(RATE))
            writer.commit()
    assert _one_line(caught) == f"{final}: writing failed (No space left on device)"
    assert list(tmp_path.iterdir()) == []


def test_a_missing_encoder_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CODECS, "opus", Codec("Opus", "libnotthere", "opus", 160, 6, 510))  # type: ignore[index]
    with pytest.raises(AudioIOError) as caught:
        EncodedWriter(tmp_path / "a.opus", 48000, 2, "opus")
    assert _one_line(caught) == (f"{tmp_path / 'a.opus'}: cannot write opus: this PyAV build has no "
                                 "Opus encoder (libnotthere); use --format flac")
    assert encode.missing_encoder("mp3") is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("fmt", "rate", "expected"), [
    ("mp3", 96000, "MP3 cannot store 96000 Hz audio (it takes 8000, 11025, 12000, 16000, 22050, "
                   "24000, 32000, 44100, 48000 Hz); use --sample-rate 44100 or --format flac"),
    ("m4a", 192000, "AAC cannot store 192000 Hz audio (it takes 7350, 8000, 11025, 12000, 16000, "
                    "22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000 Hz); use "
                    "--sample-rate 44100 or --format flac"),
    ("ogg", 384000, "Vorbis cannot store 384000 Hz audio (it takes 8000-192000 Hz); use "
                    "--sample-rate 44100 or --format flac"),
])
def test_an_unsupported_rate_is_one_line(tmp_path: Path, fmt: str, rate: int, expected: str) -> None:
    with pytest.raises(AudioIOError) as caught:
        EncodedWriter(tmp_path / f"a.{fmt}", rate, 2, fmt)  # type: ignore[arg-type]
    assert _one_line(caught) == f"{tmp_path / f'a.{fmt}'}: {expected}"
    assert list(tmp_path.iterdir()) == []


def test_more_than_two_channels_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(AudioIOError) as caught:
        EncodedWriter(tmp_path / "a.m4a", RATE, 6, "m4a")
    assert _one_line(caught) == f"{tmp_path / 'a.m4a'}: cumx writes mono or stereo, not 6 channels"


def test_ffmpeg_prints_nothing(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    for fmt in ENCODED_FORMATS:
        write(tmp_path / f"a.{fmt}", 3.0 * signal(4410), bitrate=CODECS[fmt].max_kbps)
    for fmt, rate in [("mp3", 96000), ("m4a", 192000), ("ogg", 384000)]:
        with pytest.raises(AudioIOError):
            EncodedWriter(tmp_path / f"b.{fmt}", rate, 2, fmt)  # type: ignore[arg-type]
    assert os.listdir(tmp_path)  # the files were written
    out, err = capfd.readouterr()
    assert out == "" and err == ""
