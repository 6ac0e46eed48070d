"""``cumx separate`` across formats: every ``--format`` written, every kind of input read, the
folder search, two-stem and residual output, and a real MUSDB ``.stem.mp4``.

Every input is encoded here with PyAV (CI has no ffmpeg binary) and every stem is decoded here
with PyAV, independently of cumx's decoder. Lengths are checked against what was encoded, or,
where a container records no encoder delay or padding, against what the codec adds (stated at
each case). Sums of stems are compared as SNR, ``10 log10(sum ref^2 / sum err^2)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from cumx_cli.engine.audio.formats import DEFAULT_BITRATES
from cumx_cli.engine.weights.formats.cumx import save_model
from tests.cli.helpers import SOURCES, cumx, error_lines, files_under, show
from tests.conftest import RATE, music, random_model, tiny_config

#: The input length: 2 s and 37 samples, a multiple of no codec's frame (1152, 1024, 960, 2048).
N = 2 * RATE + 37
#: N at 48 kHz: what Opus stores (``round``, as ``cumx_cli/engine/audio/encode.py`` documents
#: its own resampling; cumx's stems have 96041, see
#: :func:`test_resampled_stems_have_the_input_length`).
N_OPUS = round(N * 48000 / RATE)
#: The input m4a's tags; the stems' titles get the source added.
TAGS = {"title": "Falcon 69", "artist": "The Easton Ellises", "album": "Demo Tapes"}
#: Float output, untouched: sums of stems can be compared.
FLOAT = ("--dtype", "float32", "--clip", "none")
#: Each lossy stem against the WAV stem of the same run's input, at the default bitrate: the
#: lowest per-stem SNR measured on the tiny model's stems (MP3 26.7-32.6, Vorbis 19.0-25.0,
#: Opus 16.1-21.6, AAC 19.7-26.5 dB; the drums stem, mostly noise, is always the lowest) less
#: about 3 dB. A 5-sample misalignment gives 5.5-9.9 dB.
MIN_SNR = {"mp3": 23.5, "ogg": 16.0, "opus": 13.0, "m4a": 16.5}
#: A lower bitrate per lossy format, for the file-size check.
LOW_KBPS = {"mp3": 128, "ogg": 96, "opus": 64, "m4a": 96}
DOWNMIX_WARNING = ("6-channel audio downmixed to stereo (FFmpeg's default matrix: centre and "
                   "surrounds at -3 dB, LFE dropped)")


def snr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    err = float(np.sum((estimate - reference) ** 2))
    return math.inf if err == 0 else float(10 * np.log10(np.sum(reference**2) / err))


# -- encoding inputs and decoding stems with PyAV -------------------------------------------------


def signal(frames: int, rate: int = RATE, channels: int = 2) -> np.ndarray:
    """:func:`~tests.conftest.music`, (channel, time) float32; more than two channels repeat
    the stereo pair."""
    x = music((frames + 1) / rate, rate=rate)[:frames].T
    return np.ascontiguousarray(np.tile(x, (3, 1))[:channels])


def _frame(data: np.ndarray, layout: str, rate: int) -> av.AudioFrame:
    """All of ``data`` (channel, time), float32 or int16, as one interleaved frame at pts 0."""
    fmt = "s16" if data.dtype == np.int16 else "flt"
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data.T).reshape(1, -1), format=fmt,
                                       layout=layout)
    frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
    return frame


@dataclass(frozen=True)
class Encoding:
    """How to encode one input: codec, container (FFmpeg muxer name), and options."""

    codec: str
    muxer: str
    rate: int = RATE
    layout: str = "stereo"
    kbps: int | None = 192
    video: str | None = None
    sample_format: str | None = None


def encode(path: Path, enc: Encoding, data: np.ndarray,
           tags: dict[str, str] | None = None) -> Path:
    """Encode ``data`` (channel, time) to ``path`` in ``enc.muxer`` (whatever the suffix), after
    three 64x48 video frames when ``enc.video`` names a video codec."""
    for codec in (enc.codec, enc.video):
        if codec is not None and codec not in av.codecs_available:
            pytest.skip(f"this PyAV's FFmpeg has no {codec} encoder")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=enc.muxer) as out:
        out.metadata.update(tags or {})
        video = None
        if enc.video is not None:
            video = out.add_stream(enc.video, rate=25)
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        stream = out.add_stream(enc.codec, rate=enc.rate, layout=enc.layout)
        if enc.kbps:
            stream.bit_rate = enc.kbps * 1000
        if enc.sample_format:
            stream.codec_context.format = enc.sample_format
        if video is not None:
            for i in range(3):
                image = np.full((48, 64, 3), 60 * i, dtype=np.uint8)
                out.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            out.mux(video.encode(None))
        out.mux(stream.encode(_frame(data, enc.layout, enc.rate)))
        out.mux(stream.encode(None))
    return path


AAC_M4A = Encoding("aac", "ipod")


@dataclass(frozen=True)
class Decoded:
    """A file as PyAV decodes it: every sample FFmpeg gives, (channel, time) float64."""

    samples: np.ndarray
    rate: int
    #: The length the container records (stream duration in samples), if it records one.
    recorded: Fraction | None
    tags: dict[str, str]

    @property
    def frames(self) -> int:
        return int(self.samples.shape[1])


def decode(path: Path) -> Decoded:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        parts = []
        for frame in container.decode(stream):
            data = frame.to_ndarray()
            if not frame.format.is_planar:
                data = data.reshape(-1, frame.layout.nb_channels).T
            if data.dtype.kind == "i":  # WAV and FLAC stems are 16-bit
                data = data / 2.0 ** (8 * data.dtype.itemsize - 1)
            parts.append(np.asarray(data, np.float64))
        recorded = (stream.duration * stream.time_base * stream.rate
                    if stream.duration is not None and stream.time_base is not None else None)
        tags = {k.lower(): v for k, v in {**stream.metadata, **container.metadata}.items()}
        return Decoded(np.concatenate(parts, axis=1), stream.rate, recorded, tags)


def pyav_frames(path: Path) -> int:
    """The sum of ``frame.samples`` over a plain PyAV decode of the first audio stream."""
    with av.open(str(path)) as container:
        return sum(frame.samples for frame in container.decode(container.streams.audio[0]))


def total(stems: dict[str, np.ndarray]) -> np.ndarray:
    """The sum of the stems."""
    return np.sum(np.stack(list(stems.values())), axis=0)


def read_stems(folder: Path, names: tuple[str, ...] = SOURCES) -> dict[str, np.ndarray]:
    """WAV stems as (time, channel) float64."""
    return {name: sf.read(folder / f"{name}.wav", dtype="float64")[0] for name in names}


def warning_lines(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [line for line in result.stderr.splitlines() if line.startswith("warning:")]


def ok(result) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, show(result)
    assert error_lines(result) == [] and "Traceback" not in result.output, show(result)


# -- module fixtures: one model, one tagged input, runs cached by their arguments ---------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("formats")


@pytest.fixture(scope="module")
def tiny(workdir: Path) -> Path:
    """The ``model`` fixture's tiny random model, made once for the module: the format tests
    compare runs of one input with one another."""
    path = workdir / "tiny.pt"
    save_model(random_model(tiny_config()), path)
    return path


@pytest.fixture(scope="module")
def tagged(workdir: Path) -> Path:
    """N samples of 44.1 kHz stereo as a tagged AAC m4a (the edit list records the priming and
    the end padding: cumx decodes exactly N samples)."""
    return encode(workdir / "in" / "song.m4a", AAC_M4A, signal(N), TAGS)


@pytest.fixture(scope="module")
def separated(workdir: Path, tiny: Path, tagged: Path) -> Callable[..., Path]:
    """``separated(*options)``: the track folder of ``cumx separate`` of :func:`tagged` with
    those options, run once per module for each set of options."""
    done: dict[tuple[str, ...], Path] = {}

    def run(*options: str) -> Path:
        if options not in done:
            out = workdir / f"run{len(done)}"
            ok(cumx("separate", tagged, "-o", out, "-m", tiny, *options))
            done[options] = out / "song"
        return done[options]

    return run


# -- every --format ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg", "opus", "m4a"])
def test_every_format_decodes_to_the_input_length(separated: Callable[..., Path], fmt: str) -> None:
    """Exactly N samples, stereo, finite, close to the WAV stems and aligned with them (a
    5-sample shift is much worse), tagged ``Title (source)``. For AAC the container records N
    exactly; FFmpeg, which ignores the edit list's end, decodes up to a frame (1023 samples) of
    padding after them. Opus: the input's duration at 48 kHz, to within a sample, as the WAV
    stems of ``--sample-rate 48000``."""
    folder = separated("--format", fmt)
    reference = separated("--sample-rate", "48000") if fmt == "opus" else separated()
    assert files_under(folder) == {f"{s}.{fmt}" for s in SOURCES}
    for source in SOURCES:
        stem = decode(folder / f"{source}.{fmt}")
        wav = decode(reference / f"{source}.wav")
        assert stem.rate == wav.rate == (48000 if fmt == "opus" else RATE)
        if fmt == "opus":
            assert abs(wav.frames - N * 48000 / RATE) < 1
        else:
            assert wav.frames == N
        assert stem.samples.shape[0] == 2 and np.isfinite(stem.samples).all()
        if fmt == "m4a":
            assert stem.recorded == N
            assert N <= stem.frames < N + 1024
        else:
            assert stem.frames == wav.frames
        got = stem.samples[:, : wav.frames]
        if fmt in ("wav", "flac"):  # both 16-bit
            np.testing.assert_array_equal(got, wav.samples)
        else:
            snr = snr_db(got, wav.samples)
            assert snr > MIN_SNR[fmt], (source, snr)
            assert snr_db(got[:, 5:], wav.samples[:, :-5]) < snr - 6, source
        assert {k: stem.tags.get(k) for k in TAGS} == {
            "title": f"Falcon 69 ({source})", "artist": TAGS["artist"], "album": TAGS["album"]}


@pytest.mark.parametrize("fmt", ["mp3", "ogg", "opus", "m4a"])
def test_a_lower_bitrate_makes_smaller_stems(separated: Callable[..., Path], fmt: str) -> None:
    """``--bitrate`` against the default: every stem smaller, roughly in proportion (measured:
    size ratios 0.38-0.54 for bitrate ratios 0.375-0.5), and still the full length."""
    low = separated("--format", fmt, "--bitrate", str(LOW_KBPS[fmt]))
    default = separated("--format", fmt)
    for source in SOURCES:
        small, large = (f / f"{source}.{fmt}" for f in (low, default))
        ratio = small.stat().st_size / large.stat().st_size
        assert 0.7 < ratio / (LOW_KBPS[fmt] / DEFAULT_BITRATES[fmt]) < 1.3, (source, ratio)
        assert decode(small).frames == decode(large).frames


# -- every kind of input -----------------------------------------------------------------------


def _ceil(n: int, size: int) -> int:
    return -(-n // size) * size


@dataclass(frozen=True)
class Input:
    """An input file and the length decoding it gives: ``N`` where the container records the
    encoder's delay and padding, else what the codec adds."""

    name: str
    enc: Encoding
    frames: int = N


INPUTS = {i.name: i for i in [
    Input("aac.m4a", AAC_M4A),
    Input("alac.m4a", Encoding("alac", "ipod", kbps=None, sample_format="s16p")),
    Input("video.mp4", Encoding("aac", "mp4", video="mpeg4")),
    # WebM: Matroska's CodecDelay and DiscardPadding; Opus at its own rate, 48 kHz
    Input("youtube.webm", Encoding("libopus", "webm", rate=48000, kbps=128, video="libvpx")),
    # WMA records nothing; FFmpeg's decoder drops the first 2048-sample frame and the last
    # partial one
    Input("windows.wma", Encoding("wmav2", "asf", kbps=128), _ceil(N, 2048) - 2048),
    # ADTS records nothing: the 1024 samples of priming and the padding to a frame stay
    Input("radio.aac", Encoding("aac", "adts"), _ceil(N, 1024) + 1024),
    Input("really aac.mp3", Encoding("aac", "adts"), _ceil(N, 1024) + 1024),
    # AC-3 in WAV (libsndfile refuses it): the 256-sample delay, padded to 1536-sample frames
    Input("film.wav", Encoding("ac3", "wav"), _ceil(N + 256, 1536)),
]}


def _source(inp: Input) -> np.ndarray:
    x = signal(N, inp.enc.rate, av.AudioLayout(inp.enc.layout).nb_channels)
    if inp.enc.sample_format == "s16p":  # lossless: fed exact 16-bit samples
        return np.clip(np.rint(x * 32768), -32768, 32767).astype(np.int16)
    return x


@pytest.mark.parametrize("name", list(INPUTS))
def test_every_kind_of_input_gives_stems_of_its_decoded_length(model: str, tmp_path: Path,
                                                               name: str) -> None:
    inp = INPUTS[name]
    src = encode(tmp_path / "in" / name, inp.enc, _source(inp))
    if name.endswith((".mp3", ".wav")):  # libsndfile goes by content, and refuses these
        with pytest.raises(sf.LibsndfileError):
            sf.info(str(src))
    if inp.enc.muxer not in ("ipod", "mp4"):  # FFmpeg itself gives the length stated above
        assert pyav_frames(src) == inp.frames
    result = cumx("separate", src, "-o", tmp_path / "out", "-m", model)
    ok(result)
    assert warning_lines(result) == []
    stems = read_stems(tmp_path / "out" / src.stem)
    for source, stem in stems.items():
        assert stem.shape == (inp.frames, 2), source
        assert sf.info(tmp_path / "out" / src.stem / f"{source}.wav").samplerate == inp.enc.rate
        assert np.isfinite(stem).all()


def test_alac_is_separated_as_the_same_samples_in_a_wav(model: str, tmp_path: Path) -> None:
    """ALAC is lossless: its stems are those of the same 16-bit samples in a WAV, bit for bit."""
    data = _source(INPUTS["alac.m4a"])
    encode(tmp_path / "in" / "alac.m4a", INPUTS["alac.m4a"].enc, data)
    sf.write(tmp_path / "in" / "pcm.wav", data.T, RATE, subtype="PCM_16")
    for name in ("alac.m4a", "pcm.wav"):
        ok(cumx("separate", tmp_path / "in" / name, "-o", tmp_path / "out", "-m", model, *FLOAT))
    alac, pcm = read_stems(tmp_path / "out" / "alac"), read_stems(tmp_path / "out" / "pcm")
    for source in SOURCES:
        np.testing.assert_array_equal(alac[source], pcm[source], err_msg=source)


def test_a_surround_m4a_is_downmixed_with_one_warning(model: str, tmp_path: Path) -> None:
    src = encode(tmp_path / "in" / "film 5.1.m4a", Encoding("aac", "ipod", layout="5.1", kbps=384),
                 signal(N, channels=6))
    result = cumx("separate", src, "-o", tmp_path / "out", "-m", model)
    ok(result)
    assert warning_lines(result) == [f"warning: {src}: {DOWNMIX_WARNING}"]
    for source, stem in read_stems(tmp_path / "out" / "film 5.1").items():
        assert stem.shape == (N, 2) and np.isfinite(stem).all(), source


@pytest.mark.parametrize(("rate", "frames", "options", "expected"), [
    pytest.param(48000, 2 * 48000 + 37, (), 2 * 48000 + 37, id="48kHz-in"),
    pytest.param(96000, 2 * 96000 + 1, (), 2 * 96000 + 1, id="96kHz-in"),
    pytest.param(RATE, N, ("--format", "opus"), N_OPUS, id="opus-out"),
])
def test_resampled_stems_have_the_input_length(model: str, tmp_path: Path, rate: int, frames: int,
                                               options: tuple[str, ...], expected: int) -> None:
    """The README: "Stems have exactly as many samples as the input ... in every format", and
    Opus stems "the input's duration" (round(N * 48000 / 44100) samples, the rule of
    ``EncodedWriter``'s own resampling). Fails today: the stems are resampled to the model's
    44.1 kHz and back, each length rounded up (``resampled_length`` is a ceiling), so a 48 kHz
    input of 96037 samples gets stems of 96038, a 96 kHz one of 192001 gets 192003, and a
    44.1 kHz one of 88237 gets Opus stems of 96041 instead of 96040."""
    src = tmp_path / "in" / "song.wav"
    src.parent.mkdir(parents=True)
    sf.write(src, signal(frames, rate).T, rate, subtype="PCM_16")
    ok(cumx("separate", src, "-o", tmp_path / "out", "-m", model, *options))
    ext = options[-1] if options else "wav"
    for source in SOURCES:
        assert pyav_frames(tmp_path / "out" / "song" / f"{source}.{ext}") == expected, source


# -- the folder search ---------------------------------------------------------------------------


def test_a_folder_search_skips_video_unless_asked(model: str, tmp_path: Path) -> None:
    """``music/``: song.m4a, clip.mp4 (video and AAC) and notes.txt, 0.5 s each."""
    folder = tmp_path / "music"
    encode(folder / "song.m4a", AAC_M4A, signal(RATE // 2))
    encode(folder / "clip.mp4", Encoding("aac", "mp4", video="mpeg4"), signal(RATE // 2))
    (folder / "notes.txt").write_text("lyrics\n")
    ok(cumx("separate", folder, "-o", tmp_path / "plain", "-m", model))
    assert files_under(tmp_path / "plain") == {f"song/{s}.wav" for s in SOURCES}
    ok(cumx("separate", folder, "-o", tmp_path / "video", "-m", model, "--ext", "mp4"))
    assert files_under(tmp_path / "video") == {f"{track}/{s}.wav" for s in SOURCES
                                               for track in ("song", "clip")}
    assert sf.info(tmp_path / "video" / "clip" / "vocals.wav").frames == RATE // 2


def test_a_stem_mp4_given_by_name_is_named_without_stem(model: str, tmp_path: Path) -> None:
    src = encode(tmp_path / "in" / "Band - Live.stem.mp4", Encoding("aac", "mp4"),
                 signal(RATE // 2))
    ok(cumx("separate", src, "-o", tmp_path / "out", "-m", model))
    assert files_under(tmp_path / "out") == {f"Band - Live/{s}.wav" for s in SOURCES}
    assert sf.info(tmp_path / "out" / "Band - Live" / "vocals.wav").frames == RATE // 2


# -- two stems and the residual ------------------------------------------------------------------


@pytest.fixture
def mixture(tmp_path: Path) -> Path:
    """N samples of 44.1 kHz stereo, a float WAV: the mixture as the model sees it."""
    path = tmp_path / "in" / "mix.wav"
    path.parent.mkdir(parents=True)
    sf.write(path, signal(N).T, RATE, subtype="FLOAT")
    return path


def separate_float(mixture: Path, model: str, out: Path, *options: str) -> dict[str, np.ndarray]:
    """The float stems of one run, by name."""
    ok(cumx("separate", mixture, "-o", out, "-m", model, *FLOAT, *options))
    return {p.stem: sf.read(p, dtype="float64")[0] for p in sorted((out / "mix").iterdir())}


def test_two_stems_add_is_the_sum_of_the_other_three(model: str, mixture: Path,
                                                     tmp_path: Path) -> None:
    """Measured: 149 dB (float32 rounding of the sum); vocals are the four-stem run's."""
    two = separate_float(mixture, model, tmp_path / "two", "--two-stems", "vocals")
    four = separate_float(mixture, model, tmp_path / "four")
    assert set(two) == {"vocals", "no_vocals"} and set(four) == set(SOURCES)
    assert snr_db(two["no_vocals"], four["drums"] + four["bass"] + four["other"]) >= 60
    np.testing.assert_array_equal(two["vocals"], four["vocals"])


def test_two_stems_minus_adds_up_to_the_mixture(model: str, mixture: Path, tmp_path: Path) -> None:
    """Measured: 153 dB."""
    two = separate_float(mixture, model, tmp_path / "two", "--two-stems", "vocals",
                         "--other-method", "minus")
    mix = sf.read(mixture, dtype="float64")[0]
    assert snr_db(two["vocals"] + two["no_vocals"], mix) >= 60


def test_two_stems_of_an_unknown_source_names_the_models_sources(model: str, mixture: Path,
                                                                 tmp_path: Path) -> None:
    result = cumx("separate", mixture, "-o", tmp_path / "out", "-m", model, "--two-stems", "nope")
    assert result.exit_code == 2, show(result)
    assert error_lines(result) == ["error: --two-stems nope: this model has bass, drums, vocals, "
                                   "other"], show(result)
    assert not (tmp_path / "out").exists()


def test_two_stems_and_stems_cannot_be_combined(model: str, mixture: Path, tmp_path: Path) -> None:
    result = cumx("separate", mixture, "-o", tmp_path / "out", "-m", model, "--two-stems",
                  "vocals", "--stems", "drums")
    assert result.exit_code == 2, show(result)
    assert error_lines(result) == ["error: --two-stems and --stems cannot be combined: "
                                   "--two-stems SOURCE writes SOURCE and no_SOURCE"], show(result)
    assert not (tmp_path / "out").exists()


def test_stems_with_residual_keep_the_residual(model: str, mixture: Path, tmp_path: Path) -> None:
    """``--residual`` adds the mixture minus the model's sources as a fifth source before the
    Wiener filter, so after it the five still add up to the mixture (measured: residual vs
    mixture minus the four, 110 dB). ``--stems vocals`` writes the same vocals and residual."""
    some = separate_float(mixture, model, tmp_path / "some", "--stems", "vocals", "--residual")
    every = separate_float(mixture, model, tmp_path / "every", "--residual")
    assert set(some) == {"vocals", "residual"} and set(every) == {*SOURCES, "residual"}
    mix = sf.read(mixture, dtype="float64")[0]
    assert snr_db(every["residual"], mix - sum(every[s] for s in SOURCES)) >= 60
    for name in ("vocals", "residual"):
        np.testing.assert_array_equal(some[name], every[name], err_msg=name)


def test_rescale_keeps_the_stems_summing_to_the_scaled_mixture(model: str, tmp_path: Path) -> None:
    """The README's ``--clip rescale``: a loud input whose stems exceed full scale; every stem is
    divided by ``1.01 * peak``, so the stems still sum to the mixture times that gain."""
    loud = tmp_path / "in" / "mix.wav"
    loud.parent.mkdir(parents=True)
    mix = 4.0 * signal(N).T.astype(np.float64)
    sf.write(loud, mix, RATE, subtype="FLOAT")
    free = separate_float(loud, model, tmp_path / "free")
    peak = max(float(np.abs(stem).max()) for stem in free.values())
    assert peak > 1.0
    ok(cumx("separate", loud, "-o", tmp_path / "scaled", "-m", model, "--dtype", "float32"))
    scaled = read_stems(tmp_path / "scaled" / "mix")
    gain = 1.0 / (1.01 * peak)
    for source in SOURCES:
        assert snr_db(scaled[source], gain * free[source]) > 100, source
    assert snr_db(total(scaled), gain * mix) >= 60


# -- real music: the MUSDB example of stempeg ----------------------------------------------------


@pytest.fixture(scope="module")
def stem_mp4() -> Path:
    stempeg = pytest.importorskip("stempeg")
    return Path(stempeg.example_stem_path())


@pytest.fixture(scope="module")
def stem_mixture(stem_mp4: Path) -> np.ndarray:
    """The first stream (the mixture) as PyAV decodes it: (channel, time) float64."""
    mixture = decode(stem_mp4)
    assert mixture.recorded == mixture.frames == 268_288 and mixture.rate == RATE
    return mixture.samples


TRACK = "The Easton Ellises - Falcon 69"


def test_a_musdb_stem_mp4_is_separated_whole(model: str, stem_mp4: Path, stem_mixture: np.ndarray,
                                             tmp_path: Path) -> None:
    """Its mixture stream, full length, named without ``.stem``; with float output the four
    stems sum back to the mixture (the Wiener filter splits the mixture: measured 90.6 dB, the
    rest float32 rounding)."""
    ok(cumx("separate", stem_mp4, "-o", tmp_path / "out", "-m", model, *FLOAT))
    assert files_under(tmp_path / "out") == {f"{TRACK}/{s}.wav" for s in SOURCES}
    stems = read_stems(tmp_path / "out" / TRACK)
    for source, stem in stems.items():
        assert stem.shape == (268_288, 2) and np.isfinite(stem).all(), source
    assert snr_db(total(stems).T, stem_mixture) >= 70


def test_a_musdb_excerpt_reencoded_as_m4a(model: str, stem_mixture: np.ndarray,
                                          tmp_path: Path) -> None:
    """3 s of the real mixture as a 256 kbps AAC m4a, encoded here: stems of exactly 3 s that
    sum back to the m4a's own decoded mixture."""
    excerpt = np.ascontiguousarray(stem_mixture[:, 44100 : 4 * 44100], np.float32)
    src = encode(tmp_path / "in" / "falcon.m4a", Encoding("aac", "ipod", kbps=256), excerpt)
    decoded = decode(src)
    assert decoded.recorded == 3 * RATE
    ok(cumx("separate", src, "-o", tmp_path / "out", "-m", model, *FLOAT))
    stems = read_stems(tmp_path / "out" / "falcon")
    for source, stem in stems.items():
        assert stem.shape == (3 * RATE, 2) and np.isfinite(stem).all(), source
    assert snr_db(total(stems).T, decoded.samples[:, : 3 * RATE]) >= 70
    assert snr_db(decoded.samples[:, : 3 * RATE], excerpt) > 15  # it is that music
