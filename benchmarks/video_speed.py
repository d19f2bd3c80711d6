"""End-to-end speed of ``iconmat matte`` on real videos, this checkout against another one, in one run.

Each run is what a user times: ``iconmat matte <seq>/frames --reference-frame 0 --mask
<seq>/masks/00000.png --out <tmp> --quiet`` (PNG alphas, classical engine unless ``--engine``), in
a fresh process; the figure is the frames/s that the command's own summary line reports (frames
matted over the time from the start of the run to the last frame written, query encoding
included). Runs alternate between the checkouts (and ``--cores`` settings) so that a slow spell
of a shared machine hits both; the table gives each one's median and every run.

``--against DIR`` names another checkout of the project (e.g. ``git worktree add /tmp/base HEAD~3``);
its package is imported from there. ``--cores 1,2`` also runs each checkout pinned to one core
(``taskset``), which shows what the second core adds.

Usage::

    python benchmarks/video_speed.py ../shared/data/davis2016-train/bear ../shared/data/davis2016-train/drift-turn \\
        --against /tmp/base --repeats 3 --cores 1,2
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_RATE = re.compile(r"\(([0-9.]+) frames/s\)")
HERE = Path(__file__).resolve().parents[1]


def run_once(tree: Path, sequence: Path, cores: int, engine: str, out: Path) -> float:
    """frames/s of one ``iconmat matte`` run of ``sequence`` with the package of ``tree``."""
    command = [sys.executable, "-m", "napari_iconmat.cli", "matte", str(sequence / "frames"), "--reference-frame", "0",
               "--mask", str(sequence / "masks" / "00000.png"), "--out", str(out), "--quiet", "--engine", engine]  # fmt: skip
    if cores == 1:
        command = ["taskset", "-c", "0", *command]
    env = dict(os.environ, PYTHONPATH=str(tree), HF_HUB_OFFLINE="1")
    shutil.rmtree(out, ignore_errors=True)
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    found = _RATE.search(done.stdout + done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"video_speed: the run of {sequence.name} in {tree} failed: {(done.stderr or done.stdout).strip()[-300:]}")
    return float(found.group(1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sequences", nargs="+", type=Path, help="DAVIS-layout sequence folders (<seq>/frames, <seq>/masks)")
    parser.add_argument("--against", type=Path, help="another checkout to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", default="2", help="comma-separated: 2 (as is) and/or 1 (pinned to one core)")
    parser.add_argument("--engine", default="classical")
    args = parser.parse_args(argv)
    args.sequences = [sequence.resolve() for sequence in args.sequences]  # each run starts in its checkout
    trees = [("this", HERE)] + ([("against", args.against.resolve())] if args.against else [])
    cores = [int(c) for c in args.cores.split(",")]
    rates: dict[tuple, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for sequence in args.sequences:
                for n in cores:
                    for name, tree in trees:
                        rate = run_once(tree, sequence, n, args.engine, Path(tmp) / "out")
                        rates.setdefault((sequence.name, name, n), []).append(rate)
                        print(f"{sequence.name} {name} cores={n}: {rate:.2f} frames/s", file=sys.stderr, flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}; cpus: {os.cpu_count()}")
    print("| video | checkout | cores | median frames/s | runs |")
    print("|---|---|---|---|---|")
    for (video, name, n), values in rates.items():
        runs = " / ".join(f"{v:.2f}" for v in values)
        print(f"| {video} | {name} | {n} | {statistics.median(values):.2f} | {runs} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
