"""A tiny ``iconmat train`` run, end to end on a CPU, for the Training section of docs/engines.md.

1. Writes a toy training set in the ICM-57 JSON layout from two synthetic
   collections (``iconmat synth collection``: one furry creature in several poses
   per collection, exact soft alpha): ``DATA/synth.json`` and
   ``DATA/synth/image|alpha/``, one group per collection, no trimaps (so the
   trainer derives them, and says so).
2. Trains the tiny random UNet/VAE config (``--tiny``) for ``--steps`` steps,
   through the CLI, and reports seconds per step, the loss at the start and end,
   and the size of a checkpoint.
3. Trains the same run again in two halves (the second with ``--resume``) and
   checks that the final decoder is bit-identical to the uninterrupted one.

Prints a markdown table (machine and date included) ready for docs/engines.md.

Usage::

    python benchmarks/train_tiny.py                         # about 2-3 min on 2 cores
    python benchmarks/train_tiny.py --steps 60 --workdir /tmp/iconmat-train
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path


def make_toy_dataset(root: Path, *, images: int, size: tuple[int, int]) -> Path:
    """``root/synth.json`` + ``root/synth/image|alpha``: two synthetic collections, one group each."""
    from napari_iconmat.core.evaluation.synth import write_synth

    folder = root / "synth"
    (folder / "image").mkdir(parents=True, exist_ok=True)
    (folder / "alpha").mkdir(parents=True, exist_ok=True)
    records = {}
    for seed in (1, 2):
        source = write_synth("collection", root / f"collection-{seed}", frames=images, size=size, seed=seed)
        for frame in sorted((source / "frames").glob("*.png")):
            name = f"c{seed}_{frame.stem}"
            shutil.copy(frame, folder / "image" / f"{name}.png")
            shutil.copy(source / "alpha" / frame.name, folder / "alpha" / f"{name}.png")
            records[name] = {"dataset_name": "synth", "class": "creature", "sub_class": f"seed{seed}", "HalfOrFull": "full"}
        shutil.rmtree(source)
    (root / "synth.json").write_text(json.dumps(records, indent=1))
    return root


def _cli(*args: str) -> float:
    from napari_iconmat.cli import main

    began = time.perf_counter()
    status = main(list(args))
    if status != 0:
        sys.exit(f"iconmat {' '.join(args)} exited with {status}")
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--images", type=int, default=6, help="images per synthetic collection (2 collections)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    import torch
    from safetensors.torch import load_file

    work = args.workdir or Path(tempfile.mkdtemp(prefix="iconmat-train-"))
    shutil.rmtree(work / "data", ignore_errors=True)
    data = make_toy_dataset(work / "data", images=args.images, size=(256, 192))
    common = ["train", str(data), "--dataset", "synth", "--tiny", "--warmup", "0", "--lr", "1e-3", "--quiet"]
    for name in ("straight", "halves"):
        shutil.rmtree(work / name, ignore_errors=True)

    seconds = _cli(*common, "--out", str(work / "straight"), "--steps", str(args.steps), "--save-every", str(args.steps))
    log = [json.loads(line) for line in (work / "straight" / "train-log.jsonl").read_text().splitlines()]
    losses = [r["total"] for r in log]
    step_seconds = [r["seconds"] for r in log]
    checkpoint = next((work / "straight" / "checkpoints").iterdir())
    sizes = {p.name: p.stat().st_size for p in checkpoint.iterdir()}

    half = args.steps // 2
    _cli(*common, "--out", str(work / "halves"), "--steps", str(half), "--save-every", str(half))
    _cli(*common, "--out", str(work / "halves"), "--steps", str(args.steps), "--resume")
    a = load_file(str(work / "straight" / "decoder.safetensors"))
    b = load_file(str(work / "halves" / "decoder.safetensors"))
    identical = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    n = min(10, len(losses) // 2)
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    print(f"Tiny training run, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, {datetime.date.today()}:\n")  # fmt: skip
    print("| measurement | result |")
    print("|---|---|")
    print(f"| data | {2 * args.images} synthetic images (256x192, soft alpha) in 2 groups, trimaps derived |")
    print(f"| run | `--tiny` (resolution 64, ensemble 4), batch 2, {args.steps} steps, lr 1e-3, no warm-up |")
    print(f"| time per step (median) | {sorted(step_seconds)[len(step_seconds) // 2]:.2f} s (whole command {seconds:.0f} s) |")
    print(f"| loss, mean of first / last {n} steps | {mean(losses[:n]):.1f} / {mean(losses[-n:]):.1f} |")
    print(f"| checkpoint size | decoder {sizes['decoder.safetensors'] / 1024:.0f} KiB, state {sizes['state.safetensors'] / 1024:.0f} KiB |")
    print(f"| {half} steps + `--resume` to {args.steps} vs {args.steps} straight | {'bit-identical decoder' if identical else 'DIFFERENT decoder'} |")
    print(f"\n(work folder: {work})")


if __name__ == "__main__":
    main()
