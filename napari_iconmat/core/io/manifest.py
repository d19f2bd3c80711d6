"""The run manifest that makes ``iconmat matte`` resumable.

A run keeps ``DIR/iconmat-run.json`` up to date after every frame: what it is
(the *identity*: input fingerprint, reference signature, engine, parameters and
output options) and how far it got (the frames done, and for each propagation
chain how many frames were matted and which track-state checkpoint follows
them). The file is replaced atomically, and only after the frame's outputs and
checkpoint are on disk, so whatever moment a run is killed at, the manifest
describes outputs that exist. Checkpoints (``DIR/.iconmat/state-K-P.npz``) and
the reference query (``DIR/.iconmat/query.npz``) are npz files read without
pickle. A manifest that cannot be read, or that belongs to another input,
reference, engine or set of options, is never resumed: the run starts over.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..errors import InputError
from .containers import remove_temporaries
from .writers import atomic_write_bytes

__all__ = [
    "MANIFEST_FORMAT",
    "RUN_DIR",
    "RUN_RECORD",
    "clear_run_outputs",
    "expand_ranges",
    "input_identity",
    "load_arrays",
    "read_manifest",
    "read_record",
    "save_arrays",
    "to_ranges",
]

MANIFEST_FORMAT = "napari-iconmat-run/2"
#: the run record (the manifest), in every output folder
RUN_RECORD = "iconmat-run.json"
#: hidden folder of a run's resumable state (query, checkpoints, parts, lock)
RUN_DIR = ".iconmat"
# Bytes hashed from each end of an input file, next to its size and mtime.
_EDGE_BYTES = 1 << 16
#: format -> the file a run assembles for it
_ASSEMBLED = {"tiff": "alpha.tif", "tiff16": "alpha.tif", "zarr": "alpha.zarr", "prores": "matte.mov", "webm": "matte.webm", "matte": "alpha.mov"}


def to_ranges(indices: Iterable[int]) -> list[list[int]]:
    """Compress frame indices into sorted ``[first, last]`` runs.

    Examples
    --------
    >>> to_ranges([5, 0, 1, 2, 7, 6])
    [[0, 2], [5, 7]]
    """
    ranges: list[list[int]] = []
    for i in sorted(set(int(i) for i in indices)):
        if ranges and i == ranges[-1][1] + 1:
            ranges[-1][1] = i
        else:
            ranges.append([i, i])
    return ranges


def expand_ranges(ranges: Any, *, limit: int = 10**7) -> set[int]:
    """The indices of :func:`to_ranges` output, all below ``limit``; raises ValueError on anything else."""
    if not isinstance(ranges, list):
        raise ValueError(f"frame ranges must be a list, got {type(ranges).__name__}")
    indices: set[int] = set()
    for item in ranges:
        if not (isinstance(item, list) and len(item) == 2 and all(type(v) is int and v >= 0 for v in item)):
            raise ValueError(f"bad frame range {item!r}")
        if item[1] < item[0] or item[1] >= limit:
            raise ValueError(f"bad frame range {item!r} (frames 0..{limit - 1})")
        indices.update(range(item[0], item[1] + 1))
    return indices


def input_identity(source) -> dict:
    """A fingerprint of what a :class:`~napari_iconmat.core.io.FrameSource` reads.

    Files: resolved path, size, modification time and a SHA-1 of their first
    and last 64 KiB; folders: name, size and modification time of every image
    in frame order (reading nothing, however many there are); arrays: a SHA-1
    of the frames (dask arrays: their dask token). A changed fingerprint means
    the input changed and an interrupted run must not be continued.
    """
    identity: dict[str, Any] = {"kind": source.kind, "frames": len(source)}
    path = getattr(source, "path", None)
    digest = hashlib.sha1()
    if path is not None:
        identity["path"] = str(Path(path).resolve())
        files = getattr(source, "files", None)
        if files is None:
            _hash_file(digest, Path(path))
        for file in files or ():
            _hash_stat(digest, Path(file))
    else:
        _hash_frames(digest, source)
    identity["sha1"] = digest.hexdigest()
    return identity


def _hash_stat(digest, path: Path) -> None:
    try:
        stat = path.stat()
    except OSError as exc:
        raise InputError(f"cannot read input file {path}: {exc.strerror or exc}") from exc
    digest.update(f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}|".encode())


def _hash_file(digest, path: Path) -> None:
    try:
        stat = path.stat()
        digest.update(f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}|".encode())
        with open(path, "rb") as handle:
            digest.update(handle.read(_EDGE_BYTES))
            if stat.st_size > 2 * _EDGE_BYTES:
                handle.seek(-_EDGE_BYTES, os.SEEK_END)
                digest.update(handle.read(_EDGE_BYTES))
    except OSError as exc:
        raise InputError(f"cannot read input file {path}: {exc.strerror or exc}") from exc


def _hash_frames(digest, source) -> None:
    data = getattr(source, "_data", None)
    if data is not None and hasattr(data, "dask"):
        from dask.base import tokenize

        digest.update(tokenize(data).encode())
        return
    for i in range(len(source)):
        frame = np.ascontiguousarray(source[i])
        digest.update(f"{frame.dtype.str}{frame.shape}".encode())
        digest.update(frame.tobytes())


def read_manifest(path: Path) -> tuple[dict | None, str]:
    """Read a run manifest.

    Returns
    -------
    manifest : dict or None
        None when there is no file, or it cannot be used to resume.
    problem : str
        Why it cannot be used ('' when it can, or when there is no file).
    """
    if not path.exists():
        return None, ""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return None, f"{path} is unreadable ({type(exc).__name__})"
    if not isinstance(data, dict):
        return None, f"{path} is not a run manifest"
    if data.get("format") != MANIFEST_FORMAT:
        if data.get("complete") is True:
            return None, ""  # a finished run of an older version: nothing to resume or to warn about
        return None, f"{path} was written by another version ({data.get('format')!r})"
    progress = data.get("progress")
    frames = data.get("input_frames")
    try:
        if not isinstance(data.get("identity"), dict) or not isinstance(progress, dict):
            raise ValueError("missing identity or progress")
        if type(frames) is not int or frames <= 0:
            raise ValueError(f"bad input_frames {frames!r}")
        expand_ranges(progress.get("done"), limit=frames)
        chains = progress.get("chains")
        if not isinstance(chains, dict):
            raise ValueError("chains must be a dict")
        for key, chain in chains.items():
            if not (key.isdigit() and isinstance(chain, dict) and type(chain.get("pos")) is int and chain["pos"] >= 0):
                raise ValueError(f"bad chain {key!r}")
            state = chain.get("state")
            if state is not None and not (isinstance(state, str) and re.fullmatch(r"state-[0-9]+-[0-9]+\.npz", state)):
                raise ValueError(f"bad checkpoint name {state!r}")
    except ValueError as exc:
        return None, f"{path} is damaged ({exc})"
    return data, ""


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Save named numeric arrays as an npz file atomically (no pickle)."""
    buffer = io.BytesIO()
    payload = {}
    for name, value in arrays.items():
        value = np.ascontiguousarray(value)
        if value.dtype == object:
            raise TypeError(f"array {name!r} has dtype object; only numeric arrays can be saved")
        payload[name] = value
    np.savez(buffer, **payload)
    return atomic_write_bytes(path, buffer.getvalue())


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Load the arrays of :func:`save_arrays` (never unpickling); InputError when unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc})") from None


def clear_run_outputs(out_dir: Path, record: dict | None = None) -> None:
    """Delete what an earlier run recorded that it wrote into ``out_dir``, and its run state.

    Only files the run's manifest ``record`` names are removed: ``alpha/NNNNN.png``,
    ``rgba/NNNNN.png`` (with format ``rgba``) and ``explain/<map>/NNNNN.png`` of the
    frames it lists as done, the assembled file of each of its formats, the
    temporaries of killed writes and ``.iconmat/`` except its lock. Files a user put
    there (``alpha/00099.png`` of no recorded frame, ``notes.txt``) stay; without a
    readable record, no frame or assembled file is removed. Call it holding the
    folder's lock.
    """
    remove_temporaries(out_dir)
    done, formats = _recorded_outputs(record)
    explain = out_dir / "explain"  # explain/<map>/NNNNN.png
    folders = [out_dir / "alpha"] + ([out_dir / "rgba"] if "rgba" in formats else [])
    if explain.is_dir():
        folders += [path for path in explain.iterdir() if path.is_dir()]
    for directory in folders:
        if directory.is_dir():
            for index in done:
                path = directory / f"{index:05d}.png"
                if path.is_file():
                    path.unlink(missing_ok=True)
    for fmt in formats:
        name = _ASSEMBLED.get(fmt)
        path = out_dir / name if name else None
        if path is None:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink(missing_ok=True)
    clear_run_state(out_dir, keep_parts=False)


def read_record(path: Path) -> dict | None:
    """The run record at ``path`` as it is (any version, complete or not), or None when unreadable."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _recorded_outputs(record) -> tuple[set[int], set[str]]:
    """(frames done, formats) a run record says its run wrote; empty when it says nothing usable."""
    if not isinstance(record, dict):
        return set(), set()
    formats = record.get("formats")
    formats = {f for f in formats if isinstance(f, str)} if isinstance(formats, list) else set()
    progress = record.get("progress")
    frames = record.get("input_frames")
    try:
        done = expand_ranges(progress.get("done"), limit=frames if type(frames) is int and frames > 0 else 10**7)
    except (AttributeError, TypeError, ValueError, InputError):
        done = set()
    return done, formats


def clear_run_state(out_dir: Path, *, keep_parts: bool = True) -> None:
    """Delete the query and track-state checkpoints of ``out_dir/.iconmat`` (and the parts unless kept)."""
    run_dir = out_dir / RUN_DIR
    if not run_dir.is_dir():
        return
    for path in run_dir.iterdir():
        if path.name == "lock" or (keep_parts and path.name == "parts"):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
