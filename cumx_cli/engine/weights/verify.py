"""What a downloaded file must match, and whether it does.

Expectations come from Zenodo's record API (size and md5 of every file, ``/api/records/<id>``)
or, on a mirror, from the ``.sha256`` beside the file; Open-Unmix file names add a sha256
prefix. A file with nothing published (Sony's ``x-umx.h5``) is checked for being an HDF5 file,
and its sha256 is recorded on first download ("trust on first use"): the result says so.
"""

from __future__ import annotations

import json

from cumx_cli.engine.errors import ChecksumMismatchError, DownloadError
from cumx_cli.engine.weights.cache import WeightsSettings
from cumx_cli.engine.weights.http import read_all
from cumx_cli.engine.weights.integrity import file_hashes, is_hdf5, split_hash_in_name
from cumx_cli.engine.weights.registry import WeightsSpec
from cumx_cli.engine.weights.transfer import Expected, Transfer


def expectations(spec: WeightsSpec, files: list[str], settings: WeightsSettings) -> dict[str, Expected]:
    """What each of ``files`` must match, from the mirror or the model's Zenodo record.

    Raises:
        DownloadError: the record or a ``.sha256`` cannot be read, or does not list a file.
        NetworkUnreachableError: the server cannot be reached.
    """
    if settings.mirror:
        return {f: _mirror_expectation(spec, f, settings) for f in files}
    if spec.zenodo_record is not None:
        return _zenodo_expectations(spec, files, settings)
    return {f: Expected(source="no published checksum") for f in files}


def _zenodo_expectations(spec: WeightsSpec, files: list[str],
                         settings: WeightsSettings) -> dict[str, Expected]:
    url = f"{settings.zenodo_url.rstrip('/')}/api/records/{spec.zenodo_record}"
    body = read_all(url, spec, settings)
    try:
        record = json.loads(body)
        entries = {str(e.get("key") or e.get("filename")): e for e in record["files"]}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DownloadError(f"{url}: not a Zenodo record (unexpected JSON: {exc}); try again later "
                            "or use --mirror") from exc
    expected = {}
    for file in files:
        entry = entries.get(file)
        if entry is None:
            raise DownloadError(f"Zenodo record {spec.zenodo_record} has no file {file!r} (it has "
                                f"{', '.join(sorted(entries)) or 'none'}); the record changed, "
                                "please report it")
        checksum = str(entry.get("checksum") or "")
        algo, _, value = checksum.partition(":") if ":" in checksum else ("md5", "", checksum)
        size = entry.get("size", entry.get("filesize"))
        expected[file] = Expected(
            size=int(size) if size is not None else None,
            md5=value.lower() if algo == "md5" and value else None,
            source=f"Zenodo record {spec.zenodo_record}",
        )
    return expected


def _mirror_expectation(spec: WeightsSpec, file: str, settings: WeightsSettings) -> Expected:
    url = settings.file_url(spec, file) + ".sha256"
    try:
        text = read_all(url, spec, settings).decode("ascii", "replace")
    except DownloadError as exc:
        if "HTTP 404" not in str(exc):
            raise
        return Expected(source="mirror (no .sha256 there)")
    digest = text.split()[0].lower() if text.split() else ""
    if len(digest) != 64:
        raise DownloadError(f"{url}: not a sha256 record; the mirror's files are damaged")
    return Expected(sha256=digest, source="mirror's .sha256")


def verify_download(transfer: Transfer) -> tuple[str, str | None]:
    """Check ``transfer.part`` against everything known about it.

    Returns:
        Its sha256, and a note when no published checksum could verify it (else None).

    Raises:
        ChecksumMismatchError: empty, or a size, checksum, name prefix or file type that does
            not match (the message says nothing was kept).
    """
    t, part = transfer, transfer.part
    hashes = file_hashes(part, ("md5", "sha256"))
    md5, digest = hashes["md5"], hashes["sha256"]
    expected = t.expected

    def mismatch(what: str) -> ChecksumMismatchError:
        return ChecksumMismatchError(f"{t.file} ({t.spec.name}): {what}; nothing was kept, run the "
                                     "command again (if it keeps failing, the server or mirror "
                                     "has a damaged copy)")

    size = part.stat().st_size
    if size == 0:
        raise mismatch("the server sent an empty file")
    if expected.size is not None and size != expected.size:
        raise mismatch(f"got {size} bytes, {expected.source} says {expected.size}")
    if expected.md5 and md5 != expected.md5:
        raise mismatch(f"md5 {md5} differs from {expected.md5} ({expected.source})")
    if expected.sha256 and digest != expected.sha256:
        raise mismatch(f"sha256 {digest[:12]}... differs from {expected.sha256[:12]}... "
                       f"({expected.source})")
    split = split_hash_in_name(t.file)
    prefix = split[1] if split else None
    if prefix and not digest.startswith(prefix):
        raise mismatch(f"sha256 {digest[:12]}... does not start with {prefix}, the prefix in its name")
    if t.spec.format == "nnabla" and not is_hdf5(part):
        raise mismatch("it is not an HDF5 file")
    if expected.md5 or expected.sha256 or prefix:
        return digest, None
    return digest, ("not verified against a published checksum (none exists); its sha256 "
                    f"{digest[:12]}... is recorded and checked on every later load")
