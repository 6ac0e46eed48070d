"""A track's stems are encoded side by side at its end: the same files as one after the other,
and a failure or an interruption leaves no stem and no temporary file behind."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
import soundfile as sf
import torch

from cumx_cli.engine.config import InferenceConfig
from cumx_cli.engine.errors import AudioIOError
from cumx_cli.engine.inference import pipeline
from cumx_cli.engine.inference.inputs import find_inputs
from cumx_cli.engine.inference.outputs import OutputSpec
from cumx_cli.engine.inference.separator import Separator
from cumx_cli.engine.model.threads import intra_op_threads
from tests.conftest import RATE, music, random_model, tiny_config

STOP_WAIT = 30.0  # seconds a call waits to be told to stop before the test fails


def test_calls_run_side_by_side_with_one_thread_each() -> None:
    """Both calls are running at once (each waits for the other), each with one intra-op thread,
    and the caller's count (also the default of new threads) is unchanged after."""
    both = threading.Barrier(2, timeout=STOP_WAIT)
    counts: list[int] = []

    def call(stop: threading.Event) -> None:
        both.wait()
        counts.append(torch.get_num_threads())

    with intra_op_threads(2):
        pipeline._side_by_side([call, call], cores=2)
        assert torch.get_num_threads() == 2
        seen: list[int] = []
        fresh = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        fresh.start()
        fresh.join()
        assert seen == [2]
    assert counts == [1, 1]


def test_with_one_core_the_calls_run_here_in_order() -> None:
    ran: list[tuple[int, str]] = []
    calls = [lambda stop, k=k: ran.append((k, threading.current_thread().name)) for k in range(3)]
    pipeline._side_by_side(calls, cores=1)
    assert ran == [(k, threading.current_thread().name) for k in range(3)]


def test_an_interruption_is_raised_only_once_every_call_has_stopped() -> None:
    """A signal reaches the waiting thread while both calls run: both are told to stop, and
    the interruption comes out only after both have ended (so the cleanup that follows it
    never races a stem being renamed into place)."""
    both = threading.Barrier(2, timeout=STOP_WAIT)
    ended: list[str] = []
    main = threading.main_thread().ident
    assert main == threading.get_ident()

    def interrupting(stop: threading.Event) -> None:
        both.wait()
        signal.pthread_kill(main, signal.SIGINT)  # a real signal: it wakes the waiting thread
        assert stop.wait(STOP_WAIT)
        ended.append("interrupting")

    def other(stop: threading.Event) -> None:
        both.wait()
        assert stop.wait(STOP_WAIT)
        ended.append("other")

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            pipeline._side_by_side([interrupting, other], cores=2)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert sorted(ended) == ["interrupting", "other"]


def test_a_failing_call_stops_the_others_and_its_error_is_raised() -> None:
    both = threading.Barrier(2, timeout=STOP_WAIT)
    ended: list[str] = []

    def failing(stop: threading.Event) -> None:
        both.wait()
        raise AudioIOError("out.wav: writing failed (disk full)")

    def other(stop: threading.Event) -> None:
        both.wait()
        assert stop.wait(STOP_WAIT)
        ended.append("other")

    queued: list[str] = []
    with pytest.raises(AudioIOError, match="disk full"):
        pipeline._side_by_side([failing, other, lambda stop: queued.append("ran")], cores=2)
    assert ended == ["other"]
    assert queued in ([], ["ran"])  # a call still queued may run, but only after the stop


def test_the_error_raised_is_the_one_that_stopped_the_others() -> None:
    """An earlier call that ends because it was told to stop does not hide the later call's
    failure that stopped it."""
    both = threading.Barrier(2, timeout=STOP_WAIT)

    def stopped(stop: threading.Event) -> None:
        both.wait()
        assert stop.wait(STOP_WAIT)
        raise pipeline._Stopped

    def failing(stop: threading.Event) -> None:
        both.wait()
        raise AudioIOError("b.wav: writing failed (disk full)")

    with pytest.raises(AudioIOError, match="disk full"):
        pipeline._side_by_side([stopped, failing], cores=2)


def _separate(tmp_path: Path, cores: int) -> tuple[pipeline.TrackResult, Path]:
    tmp_path.mkdir(exist_ok=True)
    sf.write(tmp_path / "song.wav", music(3.0, seed=2), RATE)
    out = tmp_path / f"out{cores}"
    separator = Separator(random_model(tiny_config()), InferenceConfig(device="cpu"))
    with intra_op_threads(cores):
        [result] = pipeline.separate_files(
            separator, find_inputs([tmp_path / "song.wav"], out, ()).files, OutputSpec(outdir=out))
    return result, out


def test_stems_encoded_side_by_side_equal_those_encoded_in_turn(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same separation (two cores both times, so the same numbers) with its stems
    encoded side by side, then in turn: the same files, byte for byte."""
    two, out2 = _separate(tmp_path, 2)
    real = pipeline._side_by_side
    cores: list[int] = []

    def in_turn(calls, cores_given):  # type: ignore[no-untyped-def]
        cores.append(cores_given)
        real(calls, 1)

    monkeypatch.setattr(pipeline, "_side_by_side", in_turn)
    one, out1 = _separate(tmp_path / "again", 2)
    assert cores == [2]  # it would have used two threads
    assert one.status == two.status == "ok"
    assert sorted(p.name for p in (out1 / "song").iterdir()) == ["bass.wav", "drums.wav",
                                                                  "other.wav", "vocals.wav"]
    for name in ("bass", "drums", "other", "vocals"):
        assert (out1 / "song" / f"{name}.wav").read_bytes() == (out2 / "song" / f"{name}.wav").read_bytes()


def test_a_stem_failing_while_others_are_encoded_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One stem's writer fails after the others may have been committed: the track fails and
    neither the finished stems nor any temporary file stays."""
    real = pipeline.open_writer

    def writer(final: Path, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        made = real(final, *args, **kwargs)  # type: ignore[arg-type]
        if final.stem == "other":
            def broken(frames: torch.Tensor) -> None:
                raise AudioIOError(f"{final}: writing failed (disk full)")
            made.write_frames = broken  # type: ignore[method-assign]
        return made

    monkeypatch.setattr(pipeline, "open_writer", writer)
    result, out = _separate(tmp_path, 2)
    assert result.status == "error" and "disk full" in (result.error or "")
    assert not out.exists() or not any(os.scandir(out))
