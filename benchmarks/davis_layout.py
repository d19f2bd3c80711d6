"""Shared pieces of the benchmark scripts that read a DAVIS-layout folder
(``<seq>/frames/*.jpg|png``, ``<seq>/masks/*.png``) and take classical engine options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def read_mask(path: Path) -> np.ndarray:
    """A DAVIS mask as (H, W) bool (> 127)."""
    import imageio.v3 as iio

    mask = iio.imread(path)
    return (mask[..., 0] if mask.ndim == 3 else mask) > 127


def frame_paths(sequence: Path) -> list[Path]:
    """The frames of one sequence, in name order."""
    return sorted(p for p in (sequence / "frames").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def parse(parser: argparse.ArgumentParser, argv, *, positive: str) -> tuple[argparse.Namespace, list[Path], dict] | None:
    """Parse the command line with the folder, ``--engine-option KEY=VALUE`` (repeatable) and
    ``--workers`` added to ``parser``; return the arguments, the folder's sequences and the parsed
    classical engine options, or None after printing a one-line error (no such folder, no sequence
    in it, the option named ``positive`` below 1, an engine option that is not KEY=NUMBER or that
    the engine refuses)."""
    parser.add_argument("folder", type=Path, help="DAVIS-layout folder (<seq>/frames, <seq>/masks)")
    parser.add_argument("--engine-option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if getattr(args, positive) < 1:
        print(f"error: --{positive} must be at least 1", file=sys.stderr)
        return None
    if not args.folder.is_dir():
        print(f"error: {args.folder} is not a folder", file=sys.stderr)
        return None
    sequences = sorted(p for p in args.folder.iterdir() if (p / "frames").is_dir() and (p / "masks").is_dir())
    if not sequences:
        print(f"error: no <seq>/frames + <seq>/masks folders in {args.folder}", file=sys.stderr)
        return None
    options = {}
    for item in args.engine_option:
        key, _, value = item.partition("=")
        try:
            options[key] = float(value)
        except ValueError:
            print(f"error: --engine-option {item!r} is not KEY=NUMBER", file=sys.stderr)
            return None
    from napari_iconmat.core import make_engine

    try:
        make_engine("classical", **options)
    except Exception as error:  # an unknown parameter, a value out of range
        print(f"error: classical engine options {options}: {error}", file=sys.stderr)
        return None
    return args, sequences, options
