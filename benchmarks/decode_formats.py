"""Decoding through FFmpeg: the lengths cumx reads from each kind of input, and what decoding an
AAC ``.m4a`` instead of a WAV costs ``cumx separate``.

1. Formats. The same music-like stereo signal (``--seconds`` plus 37 samples, a multiple of no
   codec's frame) is encoded here with PyAV as AAC ``.m4a``, ALAC ``.m4a``, Opus ``.opus``,
   WebM (Opus, with a video track), MP4 (AAC, with a video track), WMA, ADTS ``.aac`` and 5.1
   AAC ``.m4a``. For each: the samples encoded, a plain PyAV decode (the sum of
   ``frame.samples``), cumx's decoder (``probe``: encoder delay and padding removed as the
   container records them), the length of the stems that separating it writes with a small
   model (``tests/fixtures/peers/xumx_asteroid.pth``, hidden size 16, loaded once: the Python
   API's ``separate_file``, which is what ``cumx separate`` runs), the time cumx takes to decode
   the file, and the time of the whole separation (decoding, separating, writing four WAVs).
2. Overhead. ``cumx separate`` of a ``--minutes`` AAC ``.m4a`` (256 kbps) against the same audio
   as a float WAV (the ``.m4a`` decoded by cumx into it, so the samples are identical and so are
   the stems), whole-process wall time, the two alternating ``--repeats`` times; the ratio of
   the medians, of wall time and of the processes' CPU time (user + system: on a machine shared
   with other work the wall time drifts by more than the decoding costs). The goal is <= 1.05
   with a full-size model (random weights, hidden 512, as ``separate_speed.py`` uses); with the
   small model separation takes so little that the decoding shows in full.

    python benchmarks/decode_formats.py                         # 10 s table; 3 min x 3, both models
    python benchmarks/decode_formats.py --seconds 0 --models full          # the overhead only
    python benchmarks/decode_formats.py --seconds 2 --minutes 0.25 --repeats 1 --models small

No ffmpeg binary is used: PyAV's wheels bundle FFmpeg.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import torch

from cumx_cli.engine.audio.io import probe, read_blocks
from cumx_cli.engine.config import ModelConfig
from cumx_cli.engine.model import CrossUMX
from cumx_cli.engine.weights.formats.cumx import save_model

RATE = 44100
ROOT = Path(__file__).resolve().parents[1]
SMALL_MODEL = ROOT / "tests" / "fixtures" / "peers" / "xumx_asteroid.pth"


@dataclass(frozen=True)
class Format:
    """One input kind: codec and FFmpeg muxer, and what the table says about its length."""

    label: str
    filename: str
    codec: str
    muxer: str
    rate: int = RATE
    layout: str = "stereo"
    kbps: int | None = 192
    video: str | None = None
    sample_format: str | None = None


FORMATS = [
    Format("AAC .m4a", "aac.m4a", "aac", "ipod"),
    Format("ALAC .m4a", "alac.m4a", "alac", "ipod", kbps=None, sample_format="s16p"),
    Format("Opus .opus", "opus.opus", "libopus", "opus", rate=48000, kbps=128),
    Format("WebM (Opus)", "video.webm", "libopus", "webm", rate=48000, kbps=128, video="libvpx"),
    Format("MP4 (AAC) + video", "video.mp4", "aac", "mp4", video="mpeg4"),
    Format("WMA", "wma.wma", "wmav2", "asf", kbps=128),
    Format("ADTS .aac", "adts.aac", "aac", "adts"),
    Format("5.1 AAC .m4a", "surround.m4a", "aac", "ipod", layout="5.1", kbps=384),
]


def music(frames: int, rate: int, start: int = 0, channels: int = 2) -> np.ndarray:
    """Tones, a bass line and noise bursts from sample ``start``: (channel, time) float32;
    more than two channels repeat the stereo pair."""
    t = np.arange(start, start + frames) / rate
    tone = 0.2 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
    bass = 0.3 * np.sin(2 * np.pi * 55 * t)
    noise = 0.05 * np.random.default_rng(start).standard_normal(t.size) * (np.sin(2 * np.pi * 2 * t) > 0.7)
    pair = np.stack([tone + bass + noise, 0.7 * tone + bass + noise]).astype(np.float32)
    return np.ascontiguousarray(np.tile(pair, (3, 1))[:channels])


def _frame(data: np.ndarray, layout: str, rate: int, pts: int) -> av.AudioFrame:
    fmt = "s16" if data.dtype == np.int16 else "flt"
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data.T).reshape(1, -1), format=fmt,
                                       layout=layout)
    frame.sample_rate, frame.pts, frame.time_base = rate, pts, Fraction(1, rate)
    return frame


def encode(path: Path, fmt: Format, frames: int, block: int = 1 << 16) -> None:
    """``frames`` samples of :func:`music` in ``fmt``, block by block (minutes fit in little
    memory); three 64x48 video frames first when ``fmt.video`` names a codec."""
    channels = av.AudioLayout(fmt.layout).nb_channels
    with av.open(str(path), "w", format=fmt.muxer) as out:
        video = None
        if fmt.video is not None:
            video = out.add_stream(fmt.video, rate=25)
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        stream = out.add_stream(fmt.codec, rate=fmt.rate, layout=fmt.layout)
        if fmt.kbps:
            stream.bit_rate = fmt.kbps * 1000 * max(1, channels // 2)
        if fmt.sample_format:
            stream.codec_context.format = fmt.sample_format
        if video is not None:
            for i in range(3):
                image = np.full((48, 64, 3), 60 * i, dtype=np.uint8)
                out.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            out.mux(video.encode(None))
        for start in range(0, frames, block):
            data = music(min(block, frames - start), fmt.rate, start, channels)
            if fmt.sample_format == "s16p":
                data = np.clip(np.rint(data * 32768), -32768, 32767).astype(np.int16)
            out.mux(stream.encode(_frame(data, fmt.layout, fmt.rate, start)))
        out.mux(stream.encode(None))


def pyav_frames(path: Path) -> int:
    """The sum of ``frame.samples`` over a plain PyAV decode of the first audio stream."""
    with av.open(str(path)) as container:
        return sum(frame.samples for frame in container.decode(container.streams.audio[0]))


def cumx_decode(path: Path) -> tuple[int, float]:
    """(samples, seconds) of cumx's probe and a full read in blocks."""
    start = time.perf_counter()
    info = probe(path)
    total = sum(block.shape[1] for block in read_blocks(info))
    assert total == info.frames
    return info.frames, time.perf_counter() - start


@dataclass(frozen=True)
class Timing:
    """One ``cumx separate`` process: wall seconds, and the CPU seconds (user + system) it used,
    which other processes sharing the cores disturb far less than the wall time."""

    wall: float
    cpu: float


def separate(path: Path, model: Path, out: Path) -> Timing:
    """``cumx separate`` in its own process (stems as WAV in ``out``)."""
    cmd = [sys.executable, "-m", "cumx_cli", "separate", str(path), "-m", str(model),
           "-o", str(out), "-q", "--device", "cpu"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    errors = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}\n{errors.decode(errors='replace')}")
    return Timing(wall, usage.ru_utime + usage.ru_stime)


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def format_table(root: Path, seconds: float) -> None:
    from cumx_cli.api import load_model, separate_file
    from cumx_cli.engine.inference.separator import Separator

    separator = Separator(load_model(SMALL_MODEL))
    frames = int(seconds * RATE) + 37
    warm = root / "warm-up.wav"  # the first separation also pays for torch's one-time set-up
    sf.write(warm, music(RATE, RATE).T, RATE)
    separate_file(warm, root / "out", model=separator)
    print(f"\nformats: {frames} samples encoded ({seconds:g} s + 37) at 44.1 kHz, 48 kHz for Opus; "
          f"stems by {SMALL_MODEL.name} (WAV); load {loadavg()}")
    print(f"  {'format':19s} {'encoded':>8s} {'PyAV':>8s} {'cumx':>8s} {'stems':>8s} "
          f"{'decode s':>9s} {'separate s':>11s}")
    for fmt in FORMATS:
        if any(c is not None and c not in av.codecs_available for c in (fmt.codec, fmt.video)):
            print(f"  {fmt.label:19s} (no encoder in this PyAV)")
            continue
        path = root / fmt.filename
        encode(path, fmt, frames)
        decoded, decode_s = cumx_decode(path)
        start = time.perf_counter()
        written = separate_file(path, root / "out", model=separator)
        wall = time.perf_counter() - start
        stems = [sf.info(p).frames for p in written.values()]
        stem_frames = str(stems[0]) if len(set(stems)) == 1 else "/".join(map(str, stems))
        print(f"  {fmt.label:19s} {frames:8d} {pyav_frames(path):8d} {decoded:8d} "
              f"{stem_frames:>8s} {decode_s:9.3f} {wall:11.2f}   ({len(stems)} stems)")


def full_size_model(root: Path) -> Path:
    """A random-weight X-UMX of the published size (hidden 512, n_fft 4096, four sources)."""
    torch.manual_seed(0)
    path = root / "xumx_full.pt"
    save_model(CrossUMX(ModelConfig(sources=("vocals", "drums", "bass", "other"), bridge=True)),
               path)
    return path


def identical_pair(root: Path, minutes: float) -> tuple[Path, Path]:
    """A ``minutes`` AAC m4a (256 kbps) and a float WAV holding exactly what cumx decodes of it."""
    m4a, wav = root / "long.m4a", root / "long.wav"
    encode(m4a, Format("AAC", m4a.name, "aac", "ipod", kbps=256), int(minutes * 60 * RATE))
    info = probe(m4a)
    with sf.SoundFile(str(wav), "w", info.sample_rate, info.channels, subtype="FLOAT") as f:
        for block in read_blocks(info):
            f.write(block.numpy().T)
    return m4a, wav


def alternate(m4a: Path, wav: Path, model: Path, root: Path, repeats: int
              ) -> Iterator[tuple[Timing, Timing]]:
    """(m4a, wav) timings, the order swapped every pair (a shared VM drifts)."""
    for k in range(repeats):
        if k % 2:
            w = separate(wav, model, root / "out_wav")
            a = separate(m4a, model, root / "out_m4a")
        else:
            a = separate(m4a, model, root / "out_m4a")
            w = separate(wav, model, root / "out_wav")
        yield a, w


def overhead(root: Path, minutes: float, repeats: int, models: list[str]) -> None:
    m4a, wav = identical_pair(root, minutes)
    _, m4a_s = cumx_decode(m4a)
    _, wav_s = cumx_decode(wav)
    print(f"\noverhead: cumx separate of a {minutes:g} min AAC .m4a vs the same samples as a float "
          f"WAV, whole process, {repeats} alternating pair(s)")
    print(f"  decoding alone: m4a {m4a_s:.2f} s, wav {wav_s:.2f} s")
    for name in models:
        model = full_size_model(root) if name == "full" else SMALL_MODEL
        print(f"  model {name} ({model.name}); load {loadavg()}")
        pairs = list(alternate(m4a, wav, model, root, repeats))
        for a, w in pairs:
            print(f"    wall: m4a {a.wall:6.1f} s  wav {w.wall:6.1f} s  ratio {a.wall / w.wall:5.3f}"
                  f"    cpu: m4a {a.cpu:6.1f} s  wav {w.cpu:6.1f} s  ratio {a.cpu / w.cpu:5.3f}")
        same = all(np.array_equal(sf.read(root / "out_m4a" / "long" / f"{s}.wav")[0],
                                  sf.read(root / "out_wav" / "long" / f"{s}.wav")[0])
                   for s in ("vocals", "drums", "bass", "other"))
        wall = (statistics.median(a.wall for a, _ in pairs)
                / statistics.median(w.wall for _, w in pairs))
        cpu = statistics.median(a.cpu for a, _ in pairs) / statistics.median(w.cpu for _, w in pairs)
        goal = " (goal <= 1.05)" if name == "full" else ""
        print(f"  ratio m4a / wav, {name} model: wall {wall:.3f}{goal}, cpu {cpu:.3f}; "
              f"stems identical: {same}; load {loadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="length of the format table's inputs (0: no table)")
    parser.add_argument("--minutes", type=float, default=3.0,
                        help="length of the overhead test's input (0: no overhead test)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating m4a/wav pairs per model")
    parser.add_argument("--models", default="full,small",
                        help="for the overhead test: full (random full-size X-UMX), small "
                        "(xumx_asteroid.pth), or both")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not set(models) <= {"full", "small"}:
        parser.error("--models takes full, small or full,small")
    print(f"PyAV {av.__version__} (FFmpeg libavformat {av.library_versions['libavformat']}), "
          f"torch {torch.__version__}; load {loadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.seconds > 0:
            format_table(Path(tmp), args.seconds)
        if args.minutes > 0 and models:
            overhead(Path(tmp), args.minutes, max(1, args.repeats), models)


if __name__ == "__main__":
    main()
