"""How a correction changes the frames it touches, for docs/napari.md (issue 20, defect 9).

A user marks the object on frame 0 and propagates (the first keyframe), then corrects one later
frame by painting the true mask there (the second keyframe) and propagates again. For each
sequence and rule this reports the IoU (alpha > 0.5 against the truth) change from before the
correction to after it, over every frame but the two keyframes (frames a rule does not re-matte
count as unchanged): the change of their mean, and the worst change of a single frame with its
index. A correction "never makes a frame worse" when that worst change is >= about -0.01.

Rules (classical engine):

* ``nearest``: every frame from its nearest keyframe alone (``Keyframes(n)``);
* ``blend``: a frame between two keyframes from both, weighted by
  :meth:`~napari_iconmat.core.pipeline.keyframes.Keyframes.blend_weights` (``Keyframes(n,
  blend=True)`` with ``MEET_AGREEMENT`` off: both sides on every frame between the keyframes);
* ``meet``: the widget's rule, ``blend`` where the correction's chain stops at the first frame where
  it agrees with the old matte (:data:`~napari_iconmat.core.pipeline.keyframes.MEET_AGREEMENT`), the
  frames beyond keeping their old mattes;
* ``daf``: an offline emulation, not in the widget, of MiVOS's difference-aware fusion without
  its network (see :func:`_difference_aware`); it runs the correction's backward chain twice.

Frames after the correction come from its forward chain under every rule.

Sequences: ``sample`` is the plugin's built-in sample (*File > Open Sample*, 16 frames of 320x180,
:func:`napari_iconmat._sample_data.sample_sequence`), corrected at frame 14; a DAVIS-layout
sequence folder (``<seq>/frames``, ``<seq>/masks``) or a folder of them is read downscaled by
``--scale`` (default 1/4), its first ``--frames`` frames (default 30), corrected at frame 20.

Usage::

    python benchmarks/correction_effect.py sample ../shared/data/davis2016-dev
    python benchmarks/correction_effect.py sample --working-size 320 --detail
    python benchmarks/correction_effect.py ../shared/data/davis2016-train/bear --correction 20 --json out.json

``--detail`` adds the frames between the keyframes one by one: the IoU before, after ``blend``,
``meet`` and ``daf``, and each side's IoU, confidence and blend weight (of the ``blend`` run).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np

RULES = ("nearest", "blend", "meet", "daf")


def load_sample() -> tuple[np.ndarray, np.ndarray]:
    """The plugin's sample: frames (T, H, W, 3) uint8 and truth masks (T, H, W) bool."""
    from napari_iconmat._sample_data import sample_sequence

    (frames, _, _), (alpha, _, _) = sample_sequence()
    return frames, alpha > 0.5


def load_davis(sequence: Path, n_frames: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n_frames`` frames and masks of a DAVIS-layout sequence, resized by ``scale``."""
    import cv2
    import imageio.v3 as iio

    from davis_layout import frame_paths, read_mask

    frames, masks = [], []
    for path in frame_paths(sequence)[:n_frames]:
        image = iio.imread(path)[..., :3]
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        mask = read_mask(sequence / "masks" / f"{path.stem}.png").astype(np.float32)
        frames.append(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
        masks.append(cv2.resize(mask, size, interpolation=cv2.INTER_AREA) > 0.5)
    return np.stack(frames), np.stack(masks)


def _propagate(frames, engine, keys, cache) -> dict[int, np.ndarray]:
    from napari_iconmat.core.pipeline.keyframes import matte_keyframes

    return {i: m.alpha for i, m in matte_keyframes(frames, engine, keys, keys.plan(engine), cache=cache)}


def _difference_aware(frames, engine, keys, before_alpha, sides, correction, weights) -> dict[int, np.ndarray]:
    """The blend's frames between the keyframes as MiVOS's difference-aware fusion would make them,
    without its network: the old matte of the corrected frame is propagated backward too, and only
    the difference of the two backward chains (what the correction changed, carried to each frame)
    is added to the old matte, weighted by the correction side's blend weight. Not in the widget."""
    from napari_iconmat.core import make_prompt, propagate
    from napari_iconmat.core.errors import InputError

    try:
        query = engine.encode_reference(frames[correction], make_prompt(np.clip(before_alpha[correction], 0, 1)))
        old = {i: m.alpha for i, m in propagate(frames, query, engine, reference_index=correction, frame_range=(1, correction))}
    except InputError:  # the old matte of the corrected frame was empty (or everything): all of the correction is new
        old = {i: np.zeros_like(before_alpha[i]) for i in range(1, correction)}
    return {
        i: np.clip(before_alpha[i] + weights[i] * (sides[i] - old[i]), 0.0, 1.0).astype(np.float32)
        for i in range(1, correction)
    }


def correction_effect(frames, masks, correction: int, working_size: int, detail: bool = False) -> dict:
    """Mark frame 0, propagate, correct ``correction`` from its true mask, propagate again; for each rule.

    Returns
    -------
    dict
        Per rule (``nearest``, ``blend``, ``daf``): ``mean`` (change of the mean IoU over every frame
        but the two keyframes; frames a rule does not re-matte count as unchanged), ``worst`` and
        ``worst_frame`` (the lowest single-frame change), ``rematted`` (the frames it re-mattes) and
        ``after`` (IoU of every frame); ``before`` (IoU of every frame before the correction); with
        ``detail`` a row per frame between the keyframes.
    """
    from napari_iconmat.core import Keyframes, QueryCache, make_engine, make_prompt
    from napari_iconmat.core.evaluation.metrics import iou
    from napari_iconmat.core.pipeline import keyframes as keyframes_module

    engine = make_engine("classical", working_size=working_size)
    score = lambda alphas: [iou(alphas[i], masks[i]) for i in range(len(frames))]  # noqa: E731
    others = [i for i in range(1, len(frames)) if i != correction]
    result, before_alpha = {}, None
    widget_agreement = keyframes_module.MEET_AGREEMENT
    for rule in ("nearest", "meet", "blend"):  # blend last: daf reads its sides
        # blend: both sides on every frame between the keyframes (no chain stops where it meets the other)
        keyframes_module.MEET_AGREEMENT = np.inf if rule == "blend" else widget_agreement
        try:
            keys, cache = Keyframes(len(frames), blend=rule != "nearest"), QueryCache()
            keys.set(0, frames[0], make_prompt(masks[0]))
            alphas = _propagate(frames, engine, keys, cache)
            before_alpha = dict(alphas)
            keys.set(correction, frames[correction], make_prompt(masks[correction]))
            redone = _propagate(frames, engine, keys, cache)
        finally:
            keyframes_module.MEET_AGREEMENT = widget_agreement
        alphas.update(redone)
        result[rule] = {"rematted": sorted(redone), "after": score(alphas)}
    signature = dict(keys.plan(engine).keys)
    sides = {i: {k: keys.side(i, k, signature[k]) for k in (0, correction)} for i in range(1, correction)}
    weights = {i: keys.blend_weights(i, sides[i]) for i in sides}
    daf = _difference_aware(
        frames, engine, keys, before_alpha, {i: s[correction].alpha for i, s in sides.items()},
        correction, {i: w[correction] for i, w in weights.items()},
    )
    result["daf"] = {"rematted": result["blend"]["rematted"], "after": score({**alphas, **daf})}
    before = score(before_alpha)
    for rule in RULES:
        change = {i: result[rule]["after"][i] - before[i] for i in others}
        worst = min(others, key=change.get)
        result[rule].update(mean=float(np.mean(list(change.values()))), worst=float(change[worst]), worst_frame=int(worst))
    result["before"] = before
    if detail:
        result["detail"] = [
            {"frame": i, "before": before[i], "blend": result["blend"]["after"][i], "meet": result["meet"]["after"][i], "daf": result["daf"]["after"][i], **{
                f"{name}_{field}": value
                for name, k in (("first", 0), ("correction", correction))
                for field, value in (("iou", iou(sides[i][k].alpha, masks[i])), ("confidence", sides[i][k].confidence), ("weight", weights[i][k]))
            }}
            for i in range(1, correction)
        ]
    return result


def _sequences(sources: list[str]) -> list[tuple[str, Path | None]]:
    out = []
    for source in sources:
        if source == "sample":
            out.append(("sample", None))
            continue
        path = Path(source)
        if (path / "frames").is_dir() and (path / "masks").is_dir():
            out.append((path.name, path))
        elif path.is_dir():
            out += [(p.name, p) for p in sorted(path.iterdir()) if (p / "frames").is_dir() and (p / "masks").is_dir()]
        else:
            raise SystemExit(f"error: {source} is neither 'sample' nor a DAVIS-layout folder")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", help="'sample', a DAVIS-layout sequence folder, or a folder of them")
    parser.add_argument("--frames", type=int, default=30, help="DAVIS frames used (default 30)")
    parser.add_argument("--scale", type=float, default=0.25, help="DAVIS frame scale (default 0.25)")
    parser.add_argument("--correction", type=int, help="correction frame (default 14 for the sample, 20 for DAVIS)")
    parser.add_argument("--working-size", type=int, nargs="+", help="classical working_size (default 96 and 320 for the sample, 96 for DAVIS)")
    parser.add_argument("--detail", action="store_true", help="print the blend frame by frame")
    parser.add_argument("--json", type=Path, help="also write every number as JSON")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # davis_layout

    report = {"date": datetime.date.today().isoformat(), "command": " ".join(["python", "benchmarks/correction_effect.py", *(argv or sys.argv[1:])]), "rows": []}
    print("| sequence, correction, working_size | " + " | ".join(f"{rule}: mean, worst (frame)" for rule in RULES) + " |")
    print("|---" * (1 + len(RULES)) + "|")
    for name, path in _sequences(args.sources):
        frames, masks = load_sample() if path is None else load_davis(path, args.frames, args.scale)
        correction = args.correction if args.correction is not None else (14 if path is None else 20)
        if not 0 < correction < len(frames):
            print(f"error: correction frame {correction} is outside 1..{len(frames) - 1} for {name}", file=sys.stderr)
            return 2
        for size in args.working_size or ([96, 320] if path is None else [96]):
            results = correction_effect(frames, masks, correction, size, args.detail)
            cells = [f"{results[r]['mean']:+.3f}, {results[r]['worst']:+.3f} ({results[r]['worst_frame']})" for r in RULES]
            print(f"| {name} ({len(frames)} frames), {correction}, {size} | " + " | ".join(cells) + " |", flush=True)
            report["rows"].append({"sequence": name, "n_frames": len(frames), "correction": correction, "working_size": size, **results})
            for row in results.get("detail", []):
                print("    " + "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
