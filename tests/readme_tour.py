"""The README tour's machinery: README.md's fenced blocks, a sandbox to run them in, and a runner.

The sandbox is a folder that holds the files the examples name (``song.mp3``, ``album/``,
``music/`` ...), with ``HOME`` and the weights cache inside it and a fake Zenodo on 127.0.0.1
serving small X-UMX checkpoints under the published names (the network guard of conftest stays
on). The few textual changes made before running a block are listed in :data:`SUBSTITUTIONS`,
each with its reason. The tests are tests/test_readme.py and tests/test_readme_training.py (the
slowest examples, a file of their own so that pytest-xdist runs them beside the others).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.conftest import RATE, music
from tests.fake_zenodo import ASTEROID, FakeZenodo

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
#: Published names the examples use, with (Zenodo record, file name) from the registry.
RECORDS = {4704231: "pretrained_xumx.pth", 4740378: "pretrained_xumx_musdb18HQ.pth"}
#: (text in README, what runs instead, why). Nothing else is changed.
SUBSTITUTIONS = [
    ("localhost:8000", "localhost:{port}", "port 8000 may be taken on a CI machine"),
    ("-d shared-weights/weights 8000", "-d shared-weights/weights {port}", "the same port"),
]


def blocks(language: str) -> list[tuple[int, str]]:
    """(line number, text) of every fenced block in the README with this info string."""
    found, lines = [], README.splitlines()
    for n, line in enumerate(lines):
        if line.strip() == f"```{language}":
            end = next(i for i in range(n + 1, len(lines)) if lines[i].startswith("```"))
            found.append((n + 1, "\n".join(lines[n + 1 : end])))
    return found


BASH = blocks("bash")
PYTHON = blocks("python")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def encode_with_pyav(path: Path, audio: np.ndarray, video: bool) -> None:
    """AAC audio ((time, channel) float at :data:`RATE`) in ``path``'s container, with a few
    frames of MPEG-4 video first when ``video``: files as users have them, made without an
    ffmpeg binary."""
    import av

    with av.open(str(path), "w") as container:
        picture = None
        if video:
            picture = container.add_stream("mpeg4", rate=10)
            picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
        sound = container.add_stream("aac", rate=RATE)
        sound.layout = "stereo"
        if picture is not None:
            for n in range(10):
                image = np.full((48, 64, 3), 20 * n, dtype=np.uint8)
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                for packet in picture.encode(frame):
                    container.mux(packet)
            for packet in picture.encode(None):
                container.mux(packet)
        planar = np.ascontiguousarray(audio.T, dtype=np.float32)
        for start in range(0, planar.shape[1], 4096):
            frame = av.AudioFrame.from_ndarray(planar[:, start : start + 4096], format="fltp",
                                               layout="stereo")
            frame.sample_rate, frame.pts = RATE, start
            for packet in sound.encode(frame):
                container.mux(packet)
        for packet in sound.encode(None):
            container.mux(packet)


@contextmanager
def make_sandbox(root: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """Fill ``root`` with the examples' files; yields it and the environment to run blocks in."""
    song = music(3.0)
    sf.write(root / "song.mp3", song, RATE)
    sf.write(root / "song.wav", song, RATE)
    for path in ("album/01 intro.wav", "album/disc 2/02.flac", "music/a.wav", "music/b.flac",
                 "music/c.wav"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / path, music(1.5, seed=len(path)), RATE)
    (root / "music" / "broken.wav").write_bytes(b"")  # the jq example reports this one
    encode_with_pyav(root / "live.m4a", music(2.0, seed=3), video=False)
    encode_with_pyav(root / "song.m4a", song, video=False)
    encode_with_pyav(root / "concert.mkv", music(2.0, seed=4), video=True)
    sf.write(root / "a.wav", music(1.0, seed=7), RATE)
    sf.write(root / "b.flac", music(1.0, seed=8), 48000)
    (root / "xumx.pth").write_bytes(ASTEROID)
    (root / "home").mkdir()
    (root / "completions").symlink_to(ROOT / "completions")
    (root / "benchmarks").symlink_to(ROOT / "benchmarks")
    zenodo = FakeZenodo()
    for record, name in RECORDS.items():
        zenodo.add_record(record, {name: ASTEROID})
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "HOME": str(root / "home"), "CUMX_CACHE_DIR": str(root / "cache"),
           "CUMX_ZENODO_URL": zenodo.url, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), "PORT": str(free_port())}
    for var in ("CUMX_OFFLINE", "CUMX_WEIGHTS_MIRROR", "CUMX_DEVICE"):
        env.pop(var, None)
    try:
        yield root, env
    finally:
        zenodo.close()


def run_block(text: str, root: Path, env: dict[str, str], timeout: float = 1800) -> str:
    """Run a bash block (strict mode) in its own process group; background jobs are killed
    when it ends. Returns stdout."""
    for old, new, _ in SUBSTITUTIONS:
        text = text.replace(old, new.format(port=env["PORT"]))
    out_path, err_path = root / ".block.out", root / ".block.err"
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        # Files, not pipes: a background job (the mirror's HTTP server) keeps a pipe open.
        proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", text], cwd=root, env=env,
                                stdout=out_file, stderr=err_file, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    out, err = out_path.read_text(), err_path.read_text()
    assert proc.returncode == 0, f"README block failed (exit {proc.returncode}):\n{text}\n{err[-3000:]}"
    return out


def block(startswith: str) -> str:
    (text,) = [t for _, t in BASH if t.lstrip().startswith(startswith)]
    return text


def stems(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


FOUR = {"bass.wav", "drums.wav", "vocals.wav", "other.wav"}
