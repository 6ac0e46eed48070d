"""The registry of published models: where each one lives, what it is, and how it is verified.

Nothing here touches the network or the disk. Sizes and checksums of the Zenodo files are not
written down anywhere we could read (spec §6.1), so they are *not* pinned here: the downloader
reads them from Zenodo's record API (size and md5 of every file) at download time, and keeps a
sha256 of each verified file beside it in the cache. The Open-Unmix files also carry a sha256
prefix in their names (torch.hub's convention), which is checked too.

Sony's ``x-umx.h5`` has no published checksum at all: it is checked for a plausible size and for
being loadable, its sha256 is recorded on first download ("trust on first use"), and every later
load is checked against that record. The download says so.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

from cumx_cli.engine.config import MUSDB_SOURCES
from cumx_cli.engine.errors import UnknownWeightsError

WeightsFormat = Literal["asteroid", "umx", "nnabla"]
Verification = Literal["zenodo-md5", "zenodo-md5+name-sha256", "first-use"]
#: The test set a published score was measured on: MUSDB18 (``.stem.mp4``, AAC, band-limited to
#: 16 kHz; also its decoded wav, as asteroid's recipe scores it) or MUSDB18-HQ (uncompressed wav).
#: The same 50 test tracks, but scores on one are not the other's (``cumx eval`` compares only
#: like with like).
ScoreSet = Literal["MUSDB18", "MUSDB18-HQ"]

ZENODO_URL = "https://zenodo.org"


@dataclass(frozen=True)
class WeightsSpec:
    """One published model.

    Attributes:
        name: the name users type (``--model NAME``, ``download-weights NAME``).
        description: one line.
        format: how the files are read: an asteroid X-UMX package, an Open-Unmix folder of
            per-source files, or NNabla parameters (HDF5).
        files: file names, as on the server and in the cache.
        zenodo_record: the Zenodo record holding the files, or None.
        url: the folder URL for files outside Zenodo (ends with ``/``), or None.
        sources: the model's sources, in the order the loaded model has them.
        sample_rate: in Hz.
        license: as far as the sources we read say; "see ..." where they do not.
        training_data: the data set it was trained on.
        sdr: reported average SDR on the test set ``sdr_set`` (median of frames, median of
            tracks), or None when none is published.
        sdr_note: where the SDR comes from.
        sdr_set: the test set ``sdr`` was measured on (None with no ``sdr``).
        approx_bytes: expected total size from the parameter count (spec §1.4, peers §1.9);
            only for display before the first download.
        verification: how downloads are checked (see the module docstring).
    """

    name: str
    description: str
    format: WeightsFormat
    files: tuple[str, ...]
    zenodo_record: int | None
    url: str | None
    sources: tuple[str, ...]
    sample_rate: int
    license: str
    training_data: str
    sdr: float | None
    sdr_note: str
    approx_bytes: int | None
    verification: Verification
    sdr_set: ScoreSet | None = None

    def file_url(self, file: str, zenodo_url: str = ZENODO_URL) -> str:
        """Where ``file`` is downloaded from (``zenodo_url`` replaces https://zenodo.org)."""
        if self.zenodo_record is not None:
            return f"{zenodo_url.rstrip('/')}/records/{self.zenodo_record}/files/{file}?download=1"
        assert self.url is not None  # every entry has one of the two
        return f"{self.url}{file}"

    def origin(self, zenodo_url: str = ZENODO_URL) -> str:
        """The record or folder the files come from, for messages."""
        if self.zenodo_record is not None:
            return f"{zenodo_url.rstrip('/')}/records/{self.zenodo_record}"
        return self.url or ""

    @property
    def is_folder(self) -> bool:
        """True when the model is a folder of files (Open-Unmix), False for a single file."""
        return self.format == "umx"


def _umx(name: str, record: int, files: dict[str, str], *, hidden: int, data: str, license: str,
         sdr: float | None, sdr_note: str, sdr_set: ScoreSet | None,
         description: str) -> WeightsSpec:
    return WeightsSpec(
        name=name, description=description, format="umx",
        files=tuple(f"{src}-{files[src]}.pth" for src in sorted(files)),
        zenodo_record=record, url=None, sources=MUSDB_SOURCES, sample_rate=44100, license=license,
        training_data=data, sdr=sdr, sdr_note=sdr_note, sdr_set=sdr_set,
        approx_bytes=142_300_000 if hidden == 512 else 452_000_000,  # peers §1.9
        verification="zenodo-md5+name-sha256",
    )


_XUMX_BYTES = 142_500_000  # 35.62 M float32 values (spec §1.4)

# Which set each published score was measured on (``sdr_set``), from the sources read:
# - xumx, xumxl: asteroid's egs/musdb18/X-UMX eval.py scores musdb.DB(subsets="test",
#   is_wav=True), the wav that its run.sh decodes (musdbconvert) from MUSDB18's musdb18.zip
#   (Zenodo 1117372, the compressed set); the paper's Table 1 is "MUSDB18 test" (spec §4.1, §5).
# - xumx-nnabla: Sony x-umx.md, the paper's scores (as xumx).
# - umx, umxhq: open-unmix-pytorch README (commit cf0e6e19), "Scores (Median of frames, Median
#   of tracks)": UMX vocals 6.32, drums 5.73, bass 5.23, other 4.02; UMXHQ vocals 6.25, drums
#   6.04, bass 5.07, other 4.28 (mean 5.41, the "UMX 5.41" of the X-UMX paper's Table 2); "the
#   performance of UMXHQ and UMX is almost identical since it was evaluated on compressed STEMS".
# - umxl: open-unmix README (later), issue 13: on MUSDB18 as umx and umxhq (the README at
#   cf0e6e19 predates umxl, so this one is not checked against the source here).

CATALOGUE: dict[str, WeightsSpec] = {
    spec.name: spec
    for spec in (
        WeightsSpec(
            name="xumx",
            description="X-UMX (paper model, asteroid release) trained on MUSDB18; the default",
            format="asteroid", files=("pretrained_xumx.pth",), zenodo_record=4704231, url=None,
            sources=MUSDB_SOURCES, sample_rate=44100,
            license="see Zenodo record 4704231 (not stated in the package)",
            training_data="MUSDB18", sdr=5.79,
            sdr_note="asteroid egs/musdb18/X-UMX README; equals the paper's Table 1",
            sdr_set="MUSDB18", approx_bytes=_XUMX_BYTES, verification="zenodo-md5",
        ),
        WeightsSpec(
            name="xumx-hq",
            description="X-UMX trained on MUSDB18-HQ (the MDX 2021 challenge baseline)",
            format="asteroid", files=("pretrained_xumx_musdb18HQ.pth",), zenodo_record=4740378,
            url=None, sources=MUSDB_SOURCES, sample_rate=44100,
            license="see Zenodo record 4740378", training_data="MUSDB18-HQ", sdr=None,
            sdr_note="no MUSDB18 test score published with it", approx_bytes=_XUMX_BYTES,
            verification="zenodo-md5",
        ),
        WeightsSpec(
            name="xumxl",
            description="X-UMXL: X-UMX trained on a large internal data set (asteroid PR #665)",
            format="asteroid", files=("pretrained_xumxl.pth",), zenodo_record=7128659, url=None,
            sources=MUSDB_SOURCES, sample_rate=44100,
            license="see Zenodo record 7128659: trained on Sony-internal data, check its terms "
                    "before any commercial use",
            training_data="large internal data set", sdr=6.52,
            sdr_note="asteroid README: 7.565/7.394/6.283/4.833 (vocals/drums/bass/other)",
            sdr_set="MUSDB18", approx_bytes=None, verification="zenodo-md5",
        ),
        _umx("umxhq", 3370489, {"bass": "8d85a5bd", "drums": "9619578f", "other": "b52fbbf7",
                                "vocals": "b62c91ce"},
             hidden=512, data="MUSDB18-HQ", license="see Zenodo record 3370489", sdr=5.41,
             sdr_note="open-unmix README: 6.25/6.04/5.07/4.28 (vocals/drums/bass/other), "
                      "evaluated on MUSDB18", sdr_set="MUSDB18",
             description="Open-Unmix (no bridging) trained on MUSDB18-HQ"),
        _umx("umx", 3370486, {"bass": "646024d3", "drums": "5a48008b", "other": "f8e132cc",
                              "vocals": "c8df74a5"},
             hidden=512, data="MUSDB18", license="see Zenodo record 3370486", sdr=5.33,
             sdr_note="Open-Unmix paper and README: 6.32/5.73/5.23/4.02 "
                      "(vocals/drums/bass/other)", sdr_set="MUSDB18",
             description="Open-Unmix (no bridging) trained on MUSDB18"),
        _umx("umxl", 5069601, {"bass": "2ca1ce51", "drums": "69e0ebd4", "other": "c8c5b3e6",
                               "vocals": "bccbd9aa"},
             hidden=1024, data="~400 h of private stems", license="CC BY-NC-SA 4.0 (non-commercial)",
             sdr=6.32, sdr_note="open-unmix README: 7.21/7.15/6.02/4.89 (vocals/drums/bass/other)",
             sdr_set="MUSDB18",
             description="Open-Unmix large (hidden 1024), trained on private data"),
        WeightsSpec(
            name="xumx-nnabla",
            description="X-UMX, Sony's own NNabla weights (the paper authors'); converted on load",
            format="nnabla", files=("x-umx.h5",), zenodo_record=None,
            url="https://nnabla.org/pretrained-models/ai-research-code/x-umx/",
            sources=MUSDB_SOURCES, sample_rate=44100,
            license="see sony/ai-research-code (x-umx)", training_data="MUSDB18", sdr=5.79,
            sdr_note="Sony x-umx.md: these weights give the paper's scores",
            sdr_set="MUSDB18", approx_bytes=142_400_000, verification="first-use",
        ),
    )
}

DEFAULT_MODEL = "xumx"


def get_spec(name: str) -> WeightsSpec:
    """The registry entry for ``name``.

    Raises:
        UnknownWeightsError: not a published model; the message lists them and the closest one.
    """
    try:
        return CATALOGUE[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(CATALOGUE), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownWeightsError(
            f"unknown model {name!r}: {hint}give a checkpoint path, or one of "
            f"{', '.join(CATALOGUE)}"
        ) from None
