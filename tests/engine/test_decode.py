"""The FFmpeg decoder (PyAV): exact lengths, sample values, streaming, seeking, downmix, tags and
one-line errors, on files encoded here with PyAV (no ffmpeg binary, no binary fixtures)."""

from __future__ import annotations

import math
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from av import logging as av_logging

from cumx_cli.engine.audio import decode
from cumx_cli.engine.audio.decode import (
    FFmpegAudioInfo,
    count_audio_streams,
    probe,
    read_audio,
    read_blocks,
    read_excerpt,
)
from cumx_cli.engine.audio.formats import FFMPEG_AUDIO_SUFFIXES as AUDIO_SUFFIXES
from cumx_cli.engine.audio.formats import SNDFILE_SUFFIXES, VIDEO_SUFFIXES
from cumx_cli.engine.errors import AudioIOError

#: Encoded length: 2 s at 44.1 kHz plus 123, a multiple of no codec's frame size.
N = 2 * 44100 + 123
SQRT_HALF = math.sqrt(0.5)


def tone(frames: int, channels: int, rate: int) -> np.ndarray:
    """A chirp plus a sine, different in each channel, aperiodic so that a delay shows.

    Shapes: returns (channel, time) float32, peak below 0.45.
    """
    t = np.arange(frames) / rate
    rows = [0.25 * np.sin(2 * np.pi * ((200 + 37.3 * c) * t + 150 * t**2))
            + 0.15 * np.sin(2 * np.pi * (911.7 + 53 * c) * t) for c in range(channels)]
    return np.asarray(rows, dtype=np.float32)


@dataclass(frozen=True)
class Spec:
    """A file to encode and what decoding it must give.

    ``frames``: the decoded length; ``delay``: where source sample 0 is in the output (negative:
    the decoder drops that many source samples); ``bits``: lossless, fed as integers of that
    width and decoded exactly.
    """

    name: str
    codec: str
    frames: int
    snr_db: float
    rate: int = 44100
    layout: str = "stereo"
    delay: int = 0
    bit_rate: int | None = 192_000
    options: dict[str, str] = field(default_factory=dict)
    container_options: dict[str, str] = field(default_factory=dict)
    sample_format: str | None = None
    video: str | None = None
    bits: int | None = None


def _ceil(n: int, size: int) -> int:
    return -(-n // size) * size


# Where the container records the encoder's delay and padding, the length is N. Where it
# records neither, the decoder's output is longer (or, WMA, starts late) by what the codec adds.
SPECS = {s.name: s for s in [
    # AAC in MP4: the edit list drops the 1024 priming samples and the last packet's duration
    # the padding. No noise substitution, so that a seek decodes bit-exact (see below).
    Spec("aac.m4a", "aac", N, 20, options={"aac_pns": "0"}),
    Spec("aac_pns.m4a", "aac", N, 20),
    Spec("mono.m4a", "aac", N, 20, layout="mono", options={"aac_pns": "0"}),
    Spec("surround.m4a", "aac", N, 15, layout="5.1", bit_rate=384_000, options={"aac_pns": "0"}),
    Spec("alac.m4a", "alac", N, math.inf, bit_rate=None, sample_format="s16p", bits=16),
    # Matroska stores FLAC's exact length; 24-bit samples arrive as s32.
    Spec("flac.mka", "flac", N, math.inf, bit_rate=None, sample_format="s32", bits=24),
    # Ogg Opus: pre-skip and the last granule position; WebM/Matroska: CodecDelay and
    # DiscardPadding.
    Spec("opus.opus", "libopus", N, 30, rate=48000, bit_rate=128_000),
    Spec("opus.webm", "libopus", N, 30, rate=48000, bit_rate=128_000, video="libvpx"),
    Spec("video.mp4", "aac", N, 20, video="mpeg4", options={"aac_pns": "0"}),
    Spec("video.mov", "aac", N, 20, video="mpeg4", options={"aac_pns": "0"}),
    # AAC in Matroska: CodecDelay drops the priming, nothing records the end padding.
    Spec("video.mkv", "aac", _ceil(N, 1024), 20, video="mpeg4", options={"aac_pns": "0"}),
    # Fragmented MP4 has no edit list: the priming stays; the last duration still cuts the end.
    Spec("fragmented.m4a", "aac", N + 1024, 20, delay=1024, options={"aac_pns": "0"},
         container_options={"movflags": "frag_keyframe+empty_moov"}),
    # Raw streams record nothing: ADTS keeps AAC's priming and padding, AC-3 its 256-sample
    # delay and padding to 1536-sample frames.
    Spec("adts.aac", "aac", _ceil(N, 1024) + 1024, 20, delay=1024, options={"aac_pns": "0"}),
    Spec("raw.ac3", "ac3", _ceil(N + 256, 1536), 30, delay=256),
    # WMA: FFmpeg's decoder drops its first 2048-sample frame, and the last partial frame.
    Spec("wma.wma", "wmav2", _ceil(N, 2048) - 2048, 30, delay=-2048, bit_rate=128_000),
]}


def _needs(codec: str) -> None:
    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV's FFmpeg has no {codec} encoder")


def _frame(data: np.ndarray, layout: str, rate: int) -> av.AudioFrame:
    """One frame holding all of ``data`` (channel, time), interleaved: PyAV 18's planar
    ``from_ndarray`` looks for a ninth plane in 7.1."""
    packed = {np.dtype(np.float32): "flt", np.dtype(np.int16): "s16", np.dtype(np.int32): "s32"}
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data.T).reshape(1, -1),
                                       format=packed[data.dtype], layout=layout)
    frame.sample_rate = rate
    frame.pts = 0
    frame.time_base = Fraction(1, rate)
    return frame


def encode(path: Path, spec: Spec, data: np.ndarray, *, tags: dict[str, str] | None = None) -> None:
    """Encode ``data`` ((channel, time): float32, or int16/int32 for lossless) to ``path``, with
    a few frames of a 64x48 video first when ``spec.video`` names its codec."""
    _needs(spec.codec)
    with av.open(str(path), "w", options=spec.container_options) as out:
        for key, value in (tags or {}).items():
            out.metadata[key] = value
        if spec.video:
            _needs(spec.video)
            video = out.add_stream(spec.video, rate=25)
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        stream = out.add_stream(spec.codec, rate=spec.rate, layout=spec.layout)
        if spec.bit_rate:
            stream.bit_rate = spec.bit_rate
        if spec.sample_format:
            stream.codec_context.format = spec.sample_format
        stream.codec_context.options = dict(spec.options)
        if spec.video:
            for i in range(5):
                image = np.full((48, 64, 3), 40 * i, dtype=np.uint8)
                out.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            out.mux(video.encode(None))
        out.mux(stream.encode(_frame(data, spec.layout, spec.rate)))
        out.mux(stream.encode(None))


def source(spec: Spec) -> tuple[np.ndarray, np.ndarray]:
    """What to encode for ``spec`` and the float samples it stands for (equal for lossy)."""
    channels = av.AudioLayout(spec.layout).nb_channels
    x = tone(N, channels, spec.rate)
    if spec.bits is None:
        return x, x
    scale = 2.0 ** (spec.bits - 1)
    ints = np.clip(np.rint(x * scale), -scale, scale - 1)
    stored = (ints * 2 ** (32 - spec.bits)).astype(np.int32) if spec.bits > 16 else ints.astype(np.int16)
    return stored, (ints / scale).astype(np.float32)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``media(name)``: the file of ``SPECS[name]``, encoded once per module."""
    folder = tmp_path_factory.mktemp("media")
    made: dict[str, Path] = {}

    def make(name: str) -> Path:
        if name not in made:
            path = folder / name
            encode(path, SPECS[name], source(SPECS[name])[0])
            made[name] = path
        return made[name]

    return make


def snr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / max(np.sum((estimate - reference) ** 2), 1e-30)))


def aligned(decoded: np.ndarray, reference: np.ndarray, delay: int) -> tuple[np.ndarray, np.ndarray]:
    """The overlapping parts of the decoded and source signals, given the decoder's delay."""
    decoded = decoded[:, max(delay, 0):]
    reference = reference[:, max(-delay, 0):]
    n = min(decoded.shape[1], reference.shape[1])
    return decoded[:, :n], reference[:, :n]


# --- lengths and samples ------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SPECS))
def test_decoded_length_is_what_the_container_records(media: Callable[[str], Path], name: str) -> None:
    spec = SPECS[name]
    info = probe(media(name))
    assert (info.frames, info.sample_rate) == (spec.frames, spec.rate)
    blocks = list(read_blocks(info, block_frames=10_000))
    assert sum(b.shape[1] for b in blocks) == spec.frames


def test_an_edit_list_that_starts_mid_file_is_followed(tmp_path: Path) -> None:
    """An MP4 trimmed without re-encoding: its edit list starts 3 s into 5 s of AAC. FFmpeg drops
    the packets more than a second before the edit (so the stream has fewer packets than the
    track lists: not a truncation) and decodes from the edit's first sample."""
    x = tone(5 * 44100, 2, 44100)
    path = tmp_path / "trimmed.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=44100, layout="stereo")
        stream.bit_rate = 192_000
        stream.codec_context.options = {"aac_pns": "0"}
        for packet in stream.encode(_frame(x, "stereo", 44100)) + stream.encode(None):
            assert packet.pts is not None and packet.dts is not None
            packet.pts -= 3 * 44100
            packet.dts -= 3 * 44100
            out.mux(packet)
    info = probe(path)
    assert 2 * 44100 <= info.frames < 2 * 44100 + 1024  # the last frame's padding, if unmarked
    y = read_audio(path)[0].numpy()
    assert snr_db(*aligned(y, x[:, 3 * 44100:], 0)) > 20
    assert snr_db(*aligned(y, x[:, 3 * 44100:], 5)) < 10


@pytest.mark.parametrize("name", [n for n, s in SPECS.items() if s.bits is None])
def test_lossy_samples_are_close_to_the_source(media: Callable[[str], Path], name: str) -> None:
    spec = SPECS[name]
    x, _ = source(spec)
    y, rate = read_audio(media(name))
    if spec.layout == "5.1":
        x = downmix_matrix("5.1") @ x
    assert rate == spec.rate and y.dtype == torch.float32
    assert snr_db(*aligned(y.numpy(), x, spec.delay)) > spec.snr_db
    # and no other alignment is better: the delay is the codec's, as stated
    assert snr_db(*aligned(y.numpy(), x, spec.delay + 5)) < snr_db(*aligned(y.numpy(), x, spec.delay))


@pytest.mark.parametrize("name", [n for n, s in SPECS.items() if s.bits is not None])
def test_lossless_samples_are_exact(media: Callable[[str], Path], name: str) -> None:
    y, _ = read_audio(media(name))
    np.testing.assert_array_equal(y.numpy(), source(SPECS[name])[1])


@pytest.mark.parametrize("name", ["aac.m4a", "alac.m4a", "surround.m4a", "video.mkv", "wma.wma"])
@pytest.mark.parametrize("block_frames", [100, 777, 4096, 1 << 20])
def test_blocks_are_fixed_size_and_concatenate_to_read_audio(media: Callable[[str], Path], name: str,
                                                             block_frames: int) -> None:
    """Blocks smaller than a codec frame, larger, and larger than the file."""
    info = probe(media(name))
    whole, _ = read_audio(media(name))
    blocks = list(read_blocks(info, block_frames))
    assert all(b.shape == (info.channels, block_frames) for b in blocks[:-1])
    assert 0 < blocks[-1].shape[1] <= block_frames
    assert all(b.dtype == torch.float32 and b.is_contiguous() for b in blocks)
    torch.testing.assert_close(torch.cat(blocks, dim=1), whole, rtol=0, atol=0)


def test_block_frames_must_be_positive(media: Callable[[str], Path]) -> None:
    with pytest.raises(ValueError, match="block_frames"):
        next(read_blocks(probe(media("aac.m4a")), 0))


def test_mono_stays_mono(media: Callable[[str], Path]) -> None:
    info = probe(media("mono.m4a"))
    assert (info.channels, info.source_channels, info.downmixed_from) == (1, 1, None)
    assert read_audio(media("mono.m4a"))[0].shape == (1, N)
    assert read_excerpt(media("mono.m4a"), 30_000, 100).shape == (1, 100)


def test_info_has_the_io_fields(media: Callable[[str], Path]) -> None:
    info = probe(media("video.mp4"))
    assert isinstance(info, FFmpegAudioInfo)
    assert (info.path, info.channels, info.stream, info.codec) == (media("video.mp4"), 2, 0, "aac")
    assert info.seconds == pytest.approx(N / 44100)
    assert (info.source_channels, info.source_layout, info.downmixed_from) == (2, "stereo", None)


# --- excerpts -----------------------------------------------------------------------------------


def _starts(frames: int) -> list[tuple[int, int]]:
    """Excerpts: at 0, before the seek threshold, mid-file, across the end, past the end."""
    return [(0, 1000), (5000, 3000), (30_000, 20_000), (50_001, 7777), (frames - 500, 2000),
            (frames + 10, 5), (frames - 1, 1)]


@pytest.mark.parametrize(("name", "seeks"), [("aac.m4a", True), ("alac.m4a", True),
                                             ("opus.opus", True), ("surround.m4a", True),
                                             ("video.mkv", False), ("adts.aac", False),
                                             ("wma.wma", False)])
def test_excerpt_equals_the_slice_of_the_whole(media: Callable[[str], Path], name: str, seeks: bool,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the time base counts samples, read_excerpt seeks (and is bit-exact after half a
    second of pre-roll); elsewhere it decodes from the start."""
    path = media(name)
    whole, _ = read_audio(path)
    seeked: list[bool] = []
    real = decode._fill_after_seek

    def spy(*args: Any) -> bool:
        seeked.append(real(*args))
        return seeked[-1]

    monkeypatch.setattr(decode, "_fill_after_seek", spy)
    for start, frames in _starts(whole.shape[1]):
        expected = torch.zeros(whole.shape[0], frames)
        part = whole[:, start:start + frames]
        expected[:, :part.shape[1]] = part
        got = read_excerpt(path, start, frames)
        assert got.dtype == torch.float32 and got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=0, atol=0, msg=f"excerpt at {start}")
    assert seeked == ([True] * 5 if seeks else [])


def test_excerpt_after_a_seek_with_noise_substitution_is_within_the_codecs_noise(
        media: Callable[[str], Path]) -> None:
    """AAC's noise substitution draws from a generator the seek resets: those bands differ."""
    whole, _ = read_audio(media("aac_pns.m4a"))
    for start in (30_000, 50_001):
        got = read_excerpt(media("aac_pns.m4a"), start, 20_000)
        assert snr_db(got.numpy(), whole[:, start:start + 20_000].numpy()) > 60


# --- downmix ------------------------------------------------------------------------------------


def downmix_matrix(layout: str) -> np.ndarray:
    """The matrix the decode module documents, built from the layout's channel names."""
    left = {"FL": 1.0, "FC": SQRT_HALF, "BL": SQRT_HALF, "SL": SQRT_HALF, "BC": 0.5}
    right = {"FR": 1.0, "FC": SQRT_HALF, "BR": SQRT_HALF, "SR": SQRT_HALF, "BC": 0.5}
    names = [c.name for c in av.AudioLayout(layout).channels]
    return np.array([[left.get(n, 0.0) for n in names], [right.get(n, 0.0) for n in names]],
                    dtype=np.float32)


@pytest.mark.parametrize("layout", ["5.1", "5.1(side)", "7.1", "6.1", "2.1", "quad"])
def test_surround_is_downmixed_with_the_documented_matrix(tmp_path: Path, layout: str) -> None:
    """Float PCM in WAV (the channel mask keeps the layout), a distinct sine in each channel."""
    channels = av.AudioLayout(layout).nb_channels
    t = np.arange(20_000) / 44100
    x = np.array([(0.1 + 0.05 * c) * np.sin(2 * np.pi * (300 + 170 * c) * t)
                  for c in range(channels)], dtype=np.float32)
    path = tmp_path / "surround.wav"
    encode(path, Spec("surround.wav", "pcm_f32le", 0, 0, layout=layout, bit_rate=None), x)
    info = probe(path)
    assert (info.channels, info.downmixed_from, info.source_layout) == (2, channels, layout)
    y, _ = read_audio(path)
    np.testing.assert_allclose(y.numpy(), downmix_matrix(layout) @ x, rtol=0, atol=2e-6)


def test_surround_aac_reports_the_downmix(media: Callable[[str], Path]) -> None:
    info = probe(media("surround.m4a"))
    assert (info.channels, info.source_channels, info.downmixed_from) == (2, 6, 6)
    assert info.source_layout == "5.1"


def test_a_layout_change_mid_stream_keeps_the_first_channel_count(tmp_path: Path) -> None:
    """Two ADTS streams back to back, stereo then mono: the mono part is upmixed, L = R."""
    parts = []
    for layout in ("stereo", "mono"):
        path = tmp_path / f"{layout}.aac"
        encode(path, Spec(path.name, "aac", 0, 0, layout=layout),
               tone(44100, av.AudioLayout(layout).nb_channels, 44100))
        parts.append(path.read_bytes())
    both = tmp_path / "both.aac"
    both.write_bytes(b"".join(parts))
    info = probe(both)
    first = probe(tmp_path / "stereo.aac").frames
    assert info.channels == 2 and info.frames == first + probe(tmp_path / "mono.aac").frames
    y, _ = read_audio(both)
    torch.testing.assert_close(y[0, first:], y[1, first:], rtol=0, atol=0)
    assert not torch.equal(y[0, :first], y[1, :first])


# --- content, not suffix ------------------------------------------------------------------------


def test_an_mp3_that_holds_aac_is_read_as_aac(media: Callable[[str], Path], tmp_path: Path) -> None:
    fake = tmp_path / "song.mp3"
    fake.write_bytes(media("adts.aac").read_bytes())
    info = probe(fake)
    assert (info.codec, info.frames) == ("aac", SPECS["adts.aac"].frames)


def test_a_wav_libsndfile_refuses_is_read(tmp_path: Path) -> None:
    path = tmp_path / "film.wav"
    encode(path, Spec(path.name, "ac3", 0, 0, bit_rate=None), tone(20_000, 2, 44100))
    with pytest.raises(sf.LibsndfileError):
        sf.info(str(path))
    info = probe(path)
    assert (info.codec, info.channels) == ("ac3", 2)
    assert read_audio(path)[0].shape == (2, info.frames)


def test_suffix_sets() -> None:
    for suffixes in (AUDIO_SUFFIXES, VIDEO_SUFFIXES):
        assert all(s.startswith(".") and s == s.lower() for s in suffixes)
    assert not AUDIO_SUFFIXES & VIDEO_SUFFIXES
    assert not (AUDIO_SUFFIXES | VIDEO_SUFFIXES) & SNDFILE_SUFFIXES
    assert {".m4a", ".aac", ".wma", ".ac3", ".mka"} <= AUDIO_SUFFIXES
    assert {".mp4", ".mkv", ".webm", ".mov", ".avi"} <= VIDEO_SUFFIXES


# --- tags ---------------------------------------------------------------------------------------

TAGS = {"title": "Falcon 69", "artist": "The Easton Ellises", "album": "Demo", "date": "2020"}


@pytest.mark.parametrize("name", ["aac.m4a", "opus.opus", "video.mkv"])
def test_the_tags_copied_to_stems_are_found_wherever_the_container_keeps_them(
        tmp_path: Path, name: str) -> None:
    """MP4 keeps tags in the container, Ogg in the stream, Matroska in upper case."""
    from cumx_cli.engine.audio.encode import read_tags

    path = tmp_path / name
    spec = SPECS[name]
    encode(path, spec, source(spec)[0][:, :4800], tags=TAGS)
    assert read_tags(path) == {k: TAGS[k] for k in ("title", "artist", "album")}


# --- errors -------------------------------------------------------------------------------------


def _one_line_naming(path: Path, call: Callable[[], object], phrase: str) -> None:
    with pytest.raises(AudioIOError) as caught:
        call()
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    assert phrase in message, message


def _video_only(path: Path) -> None:
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        out.mux(video.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8),
                                                        format="rgb24")))
        out.mux(video.encode(None))


def _empty_audio_track(path: Path) -> None:
    """A Matroska video whose audio track has no packets."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        out.add_stream("aac", rate=44100, layout="stereo")
        out.mux(video.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8),
                                                        format="rgb24")))
        out.mux(video.encode(None))


def _data_only(path: Path) -> None:
    with av.open(str(path), "w", format="mpegts") as out:
        data = out.add_data_stream()
        for i in range(5):
            packet = av.Packet(b"telemetry")
            packet.stream = data
            packet.pts = packet.dts = i * 90_000
            packet.time_base = Fraction(1, 90_000)
            out.mux(packet)


def _aac(path: Path, **container_options: str) -> bytes:
    spec = Spec(path.name, "aac", 0, 0, container_options=container_options)
    encode(path, spec, tone(N, 2, 44100))
    return path.read_bytes()


def _packet_boundary(path: Path, index: int) -> int:
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(container.streams.audio[0]) if p.size]
    assert packets[index].pos is not None
    return packets[index].pos


def make_bad(kind: str, folder: Path) -> Path:
    """A file that must be refused, by kind."""
    path = folder / {"no audio stream": "clip.mp4", "only data": "telemetry.ts",
                     "no samples": "silent.mkv", "text": "notes.m4a", "empty": "empty.m4a",
                     "folder": "album.m4a", "missing": "gone.m4a", "playlist": "stream.m4a"
                     }.get(kind, f"{kind.replace(' ', '_')}.m4a")
    if kind == "no audio stream":
        _video_only(path)
    elif kind == "only data":
        _data_only(path)
    elif kind == "no samples":
        _empty_audio_track(path)
    elif kind == "text":
        path.write_text("not media\n" * 100)
    elif kind == "empty":
        path.touch()
    elif kind == "folder":
        path.mkdir()
    elif kind == "playlist":  # HLS by content; the only allowed protocol is file:
        path.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n"
                        "http://192.0.2.1/segment.aac\n#EXT-X-ENDLIST\n")
    elif kind == "truncated index":  # moov at the end, cut off
        data = _aac(path)
        path.write_bytes(data[:len(data) // 2])
    elif kind == "truncated mid packet":  # moov first, mdat cut inside a packet
        data = _aac(path, movflags="faststart")
        path.write_bytes(data[:_packet_boundary(path, 40) + 100])
    elif kind == "truncated at a packet":  # moov first, mdat cut between packets
        data = _aac(path, movflags="faststart")
        path.write_bytes(data[:_packet_boundary(path, 40)])
    elif kind == "corrupt":
        data = bytearray(_aac(path, movflags="faststart"))
        start = _packet_boundary(path, 30)
        data[start:start + 3000] = np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes()
        path.write_bytes(bytes(data))
    elif kind == "encrypted":  # CENC, as a DRM-protected download is
        _aac(path, encryption_scheme="cenc-aes-ctr", encryption_key="00112233445566778899aabbccddeeff",
             encryption_kid="a7e61c373e219033c21091fa607bf3b8")
    elif kind == "fairplay":  # an iTunes-protected track: the sample entry is 'drms'
        path.write_bytes(_aac(path).replace(b"mp4a", b"drms"))
    elif kind == "garbage audio":  # every packet's bytes replaced: nothing decodes
        data = bytearray(_aac(path))
        first, last = _packet_boundary(path, 0), _packet_boundary(path, -1)
        data[first:last] = np.random.default_rng(1).integers(0, 256, last - first, np.uint8).tobytes()
        path.write_bytes(bytes(data))
    elif kind == "rate change":  # ADTS at 44.1 kHz then at 48 kHz
        first, second = folder / "a.aac", folder / "b.aac"
        encode(first, Spec(first.name, "aac", 0, 0), tone(44100, 2, 44100))
        encode(second, Spec(second.name, "aac", 0, 0, rate=48000), tone(48000, 2, 48000))
        path.write_bytes(first.read_bytes() + second.read_bytes())
    elif kind != "missing":
        raise ValueError(kind)
    return path


BAD = {
    "no audio stream": "has no audio stream (only video)",
    "only data": "has no audio stream (only data)",
    "no samples": "contains no audio samples",
    "text": "not a readable audio or video file",
    "empty": "the file is empty",
    "folder": "is a folder",
    "missing": "no such file",
    "playlist": "not a readable audio or video file",
    "truncated index": "truncated or corrupt",
    "truncated mid packet": "truncated or corrupt",
    "truncated at a packet": "the file is truncated (its index lists 88 packets, only 40",
    "corrupt": "truncated or corrupt",
    "encrypted": "encrypted (DRM-protected)",
    "fairplay": "encrypted (DRM-protected)",
    "garbage audio": "its aac audio cannot be decoded (Invalid data found when processing input: the "
                     "file is corrupt, or DRM-protected)",
    "rate change": "the sample rate changes mid-stream (44100 Hz to 48000 Hz at 1.0 s)",
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_input_is_one_line_naming_the_file(tmp_path: Path, kind: str,
                                               capfd: pytest.CaptureFixture[str]) -> None:
    path = make_bad(kind, tmp_path)
    capfd.readouterr()
    _one_line_naming(path, lambda: probe(path), BAD[kind])
    # an excerpt that reaches the problem meets it, said the same way
    _one_line_naming(path, lambda: read_excerpt(path, 0, 100_000), BAD[kind])
    assert capfd.readouterr().err == ""  # FFmpeg's own log lines stay off the terminal


def test_a_missing_stream_index_is_named(media: Callable[[str], Path]) -> None:
    path = media("aac.m4a")
    _one_line_naming(path, lambda: probe(path, stream=1), "has 1 audio stream; there is no stream 1")


def test_ffmpeg_logging_stays_quiet_and_is_restored(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                    capfd: pytest.CaptureFixture[str]) -> None:
    """Someone else turned PyAV's logging on: our decoding logs nothing and leaves it on."""
    path = make_bad("corrupt", tmp_path)
    av_logging.set_level(av_logging.VERBOSE)
    try:
        with caplog.at_level("DEBUG"), pytest.raises(AudioIOError):
            probe(path)
        assert av_logging.get_level() == av_logging.VERBOSE
    finally:
        av_logging.set_level(None)
    assert not [r for r in caplog.records if r.name.startswith("libav")]
    assert capfd.readouterr().err == ""


def test_a_file_that_changed_after_probing_is_reported(media: Callable[[str], Path]) -> None:
    info = probe(media("aac.m4a"))
    longer = FFmpegAudioInfo(info.path, info.sample_rate, info.channels, info.frames + 5)
    _one_line_naming(info.path, lambda: list(read_blocks(longer)),
                     f"probing found {N + 5} samples, only {N} could be decoded")


# --- memory -------------------------------------------------------------------------------------


def _long_pcm(path: Path, minutes: float) -> None:
    """8 kHz stereo 16-bit PCM in Matroska, written a second at a time (no encoding cost)."""
    second = (tone(8000, 2, 8000) * 32767).astype(np.int16)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000, layout="stereo")
        for i in range(int(minutes * 60)):
            frame = _frame(second, "stereo", 8000)
            frame.pts = i * 8000
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def test_memory_stays_flat_however_long_the_file(tmp_path: Path) -> None:
    """Blocks are decoded as they are asked for: the most memory Python holds at once does not
    grow from 1 to 20 minutes (20 minutes of float32 would be 77 MB)."""
    peaks = []
    for minutes in (1, 20):
        path = tmp_path / f"{minutes}.mka"
        _long_pcm(path, minutes)
        info = probe(path)
        assert info.frames == minutes * 60 * 8000
        tracemalloc.start()
        try:
            count = sum(block.shape[1] for block in read_blocks(info, block_frames=8000))
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert count == info.frames
    assert peaks[1] < 2_000_000 and peaks[1] < 2 * peaks[0] + 200_000, peaks


# --- MUSDB stems --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stem_mp4() -> Path:
    stempeg = pytest.importorskip("stempeg")
    return Path(stempeg.example_stem_path())


def test_stem_mp4_mixture_has_its_exact_length(stem_mp4: Path) -> None:
    """The MUSDB example: five AAC streams (mixture, drums, bass, other, vocals) and a PNG
    cover; ``ffmpeg -i F -map 0:a:k -f f32le -`` gives 268288 stereo samples for each k."""
    info = probe(stem_mp4)
    assert (info.frames, info.sample_rate, info.channels, info.codec) == (268_288, 44100, 2, "aac")


def test_stem_mp4_streams_in_musdb_order(stem_mp4: Path) -> None:
    assert count_audio_streams(stem_mp4) == 5
    streams = [read_audio(stem_mp4, stream=k)[0] for k in range(5)]
    assert {s.shape for s in streams} == {(2, 268_288)}
    # stream 0 is the mixture: the sum of the four stems, to within AAC's noise
    mixture, stems = streams[0].numpy(), sum(s.numpy() for s in streams[1:])
    assert snr_db(stems, mixture) > 10
    excerpt = read_excerpt(stem_mp4, 100_000, 5000, stream=4)
    torch.testing.assert_close(excerpt, streams[4][:, 100_000:105_000], rtol=0, atol=0)
