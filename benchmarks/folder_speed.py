"""A folder of short tracks through ``cumx separate``: time per file against the network alone.

Makes ``--files`` stereo 44.1 kHz files of ``--seconds`` each (the music-like signal of
``separate_speed.py``) and full-size random Open-Unmix weights (hidden 512, four targets), then
measures three things, each as interleaved repeats (a shared machine drifts):

1. the network alone, per file: in this process, one warm-up call, then the STFT magnitudes of
   one file through the model (fp32, no Wiener, iSTFT or I/O; the source networks side by side
   on CPU threads, as ``separate`` runs them);
2. the whole folder in one ``cumx separate FOLDER`` process (import, model load, every file
   decoded, separated, its four stems encoded), divided by the number of files;
3. in this process, :func:`separate_files` with the separator's overlap off (every stage one
   after the other) and on (the network in a worker thread while the calling thread filters,
   delivers, decodes and encodes): the ratio says what the overlap gives.

    python benchmarks/folder_speed.py                        # 20 files of 30 s, 2 repeats
    python benchmarks/folder_speed.py --files 4 --seconds 10 --repeats 1   # a quick look

The load average is printed first: compare the ratios, measured together, never seconds from
different runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cumx_cli.app import _tune_allocator
from cumx_cli.threads import tune_threads

tune_threads()  # the in-process runs get the command's OpenMP and allocator settings: torch
_tune_allocator()  # reads the first when it loads, so both come before torch's import

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from separate_speed import cumx_cmd, make_signal, make_weights, timed  # noqa: E402

from cumx_cli.engine.audio.io import read_audio  # noqa: E402
from cumx_cli.engine.config import InferenceConfig  # noqa: E402
from cumx_cli.engine.dsp.stft import STFT, magnitude  # noqa: E402
from cumx_cli.engine.inference.inputs import find_inputs  # noqa: E402
from cumx_cli.engine.inference.outputs import OutputSpec  # noqa: E402
from cumx_cli.engine.inference.pipeline import separate_files  # noqa: E402
from cumx_cli.engine.inference.separator import Separator  # noqa: E402
from cumx_cli.engine.model import CrossUMX  # noqa: E402
from cumx_cli.engine.model.threads import SourceThreads  # noqa: E402
from cumx_cli.engine.weights.resolver import load_model  # noqa: E402


@torch.inference_mode()
def network_seconds(model: CrossUMX, wav: Path) -> float:
    """Seconds of one file's magnitudes through the model (after the caller's warm-up)."""
    audio, _ = read_audio(wav)
    stft = STFT(model.config.n_fft, model.config.hop_length)
    mag = magnitude(stft(audio[None]))
    threads = SourceThreads.for_device(torch.device("cpu"), len(model.sources))  # as separate runs it
    start = time.perf_counter()
    model(mag, threads)
    return time.perf_counter() - start


def in_process_seconds(model: CrossUMX, folder: Path, out: Path, overlap: bool) -> float:
    """Wall seconds of :func:`separate_files` over the folder, overlap on or off."""
    separator = Separator(model, InferenceConfig(device="cpu"), overlap=overlap)
    items = find_inputs([folder], out, ()).files
    start = time.perf_counter()
    results = separate_files(separator, items, OutputSpec(outdir=out))
    wall = time.perf_counter() - start
    if any(r.status != "ok" for r in results):
        raise SystemExit(f"separation failed: {[r.error for r in results if r.error]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20, help="files in the folder")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each file")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats")
    args = parser.parse_args()
    print("load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_weights(root / "umx")
        folder = root / "songs"
        folder.mkdir()
        for k in range(args.files):
            make_signal(folder / f"track{k:02d}.wav", args.seconds / 60)
        model = load_model(root / "umx").eval()
        torch.set_grad_enabled(False)
        first = folder / "track00.wav"
        network_seconds(model, first)  # warm-up
        net, whole, seq, over = [], [], [], []
        for _ in range(max(1, args.repeats)):
            net.append(network_seconds(model, first))
            whole.append(timed(cumx_cmd(folder, root / "umx", root / "out_cli"))[0] / args.files)
            seq.append(in_process_seconds(model, folder, root / "out_seq", overlap=False))
            over.append(in_process_seconds(model, folder, root / "out_over", overlap=True))
        n = args.files
        med = statistics.median
        print(f"\n{n} files of {args.seconds:g} s, stereo 44.1 kHz, niter 1, median of "
              f"{len(net)} repeat(s)")
        print(f"  network alone, per file                 {med(net):6.2f} s")
        print(f"  cumx separate FOLDER (whole process)     {med(whole):6.2f} s per file   "
              f"{med(whole) / med(net):5.2f} x the network")
        print(f"  in process, overlap off                  {med(seq) / n:6.2f} s per file   "
              f"{med(seq) / n / med(net):5.2f} x the network")
        print(f"  in process, overlap on                   {med(over) / n:6.2f} s per file   "
              f"{med(over) / n / med(net):5.2f} x the network")
        pairs = ", ".join(f"{o / s:.2f}" for o, s in zip(over, seq, strict=True))
        print(f"  overlap on / off: {pairs}")


if __name__ == "__main__":
    main()
