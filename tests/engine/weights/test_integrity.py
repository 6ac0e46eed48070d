"""Streamed hashes, the sha256 prefix in a file name, and the HDF5 signature."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cumx_cli.engine.weights.integrity import file_hashes, file_sha256, is_hdf5, split_hash_in_name


def test_streamed_hashes_equal_hashlib_over_several_blocks(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # more than two 1 MiB blocks
    (tmp_path / "f").write_bytes(data)
    assert file_hashes(tmp_path / "f", ("md5", "sha256")) == {
        "md5": hashlib.md5(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest()}
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(("name", "split"), [
    ("vocals-b62c91ce.pth", ("vocals", "b62c91ce")),
    ("my-model-0123456789abcdef.pth", ("my-model", "0123456789abcdef")),
    ("vocals.pth", None),
    ("vocals-b62c91c.pth", None),  # 7 hex digits: too short to be a hash
    ("vocals-B62C91CE.pth", None),  # torch.hub writes lower case
    ("pretrained_xumx.pth", None),
])
def test_hash_in_name(name: str, split: tuple[str, str] | None) -> None:
    assert split_hash_in_name(name) == split


def test_hdf5_signature(tmp_path: Path) -> None:
    (tmp_path / "a.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(10))
    (tmp_path / "b.h5").write_bytes(b"<html>")
    assert is_hdf5(tmp_path / "a.h5") and not is_hdf5(tmp_path / "b.h5")
