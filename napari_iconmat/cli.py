"""The ``iconmat`` command: argv -> core calls.

Each subcommand is one function calling one core function. Errors a user can
fix (:class:`~napari_iconmat.core.errors.IconmatError`) and usage errors are
printed on one line to stderr with exit status 2; Ctrl-C prints one line and
exits 130; anything else is a bug and keeps its traceback.

==========  ============================================================
command     core call
==========  ============================================================
matte       :func:`napari_iconmat.core.pipeline.run.matte_sequence`
demo        :func:`napari_iconmat.core.pipeline.run.run_demo`
engines     :func:`napari_iconmat.core.registry.engine_statuses`
synth       :func:`napari_iconmat.core.evaluation.synth.write_synth`
eval        :func:`napari_iconmat.core.evaluation.evaluate.evaluate_folders`
bench       :func:`napari_iconmat.core.evaluation.bench.run_bench`
train       :func:`napari_iconmat.core.engines.iconmat.training.train_decoder`
checkpoint  :func:`napari_iconmat.core.engines.iconmat.checkpoint.inspect_checkpoint` / ``convert_checkpoint``
==========  ============================================================
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import warnings

from . import __version__
from .core.errors import IconmatError, InputError, Notice
from .core.io.writers import FORMAT_HELP, FORMATS
from .core.pipeline.propagate import DIRECTIONS
from .core.prompt import PROMPT_KINDS
from .core.registry import DEFAULT_ENGINE, engine_names

__all__ = ["main"]

_ORDERS = ("auto", "sequence", "collection")  # napari_iconmat.core.pipeline.run.ORDERS, without importing it for --help


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (and exit status 2)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see '{self.prog} --help')\n")


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    kind = "note" if isinstance(category, type) and issubclass(category, Notice) else "warning"
    print(f"iconmat: {kind}: {_one_line(message)}", file=sys.stderr, flush=True)


class _Progress:
    """``on_progress(done, total)`` callback drawing a tqdm bar on stderr (frames/s, ETA)."""

    def __init__(self, enabled: bool, unit: str = "frame", desc: str | None = None) -> None:
        self.enabled = enabled
        self.unit = unit
        self.desc = desc
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            # A terminal that reports no width (a bare pseudo-terminal) would get an empty bar.
            width = {"dynamic_ncols": True} if _terminal_columns() > 0 else {"ncols": 80}
            self.bar = tqdm(total=total, unit=self.unit, desc=self.desc, file=sys.stderr, **width)
        if total != self.bar.total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _terminal_columns() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


def _progress(args, unit: str = "frame", desc: str | None = None) -> _Progress:
    return _Progress(not getattr(args, "quiet", False) and sys.stderr.isatty(), unit=unit, desc=desc)


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like WxH (e.g. 640x360), got {text!r}") from None
    return width, height


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _split_list(values) -> list[str]:
    """Items of a repeatable, comma-separated option (``--format png --format tiff`` or ``--format png,tiff``)."""
    return [item.strip() for value in values or () for item in value.split(",") if item.strip()]


def _engine_options(values, what: str = "--engine-option values") -> dict:
    """``--engine-option KEY=VALUE`` pairs as engine keyword arguments (values parsed as JSON when they are)."""
    from .core.registry import parse_engine_options

    return parse_engine_options(values, what=what)


def _bench_engine_options(values, engines) -> dict | None:
    """``--engine-option`` of bench, per engine: ``KEY=VALUE`` for every engine, ``ENGINE.KEY=VALUE`` for one."""
    shared, own = [], {name: [] for name in engines}
    for item in values or ():
        head, sep, text = item.partition("=")
        name, dot, key = head.partition(".")
        if not (sep and dot):
            shared.append(item)
        elif name.strip() in own:
            own[name.strip()].append(f"{key}={text}")
        else:
            raise InputError(f"--engine-option {item!r} is for engine {name.strip()!r}, which is not among --engines ({', '.join(engines)})")
    params = {name: {**_engine_options(shared), **_engine_options(own[name])} for name in engines}
    return {name: p for name, p in params.items() if p} or None


# ---------------------------------------------------------------- commands


def _cmd_matte(args) -> int:
    from .core.pipeline.run import matte_sequence

    if len(args.input) > 1 or args.workers or args.scheduler or any(c in args.input[0] for c in "*?["):
        return _cmd_matte_job(args)  # several inputs, a glob pattern, or Dask
    args.input = args.input[0]
    with _progress(args) as progress:
        summary = matte_sequence(args.input, out_dir=args.out, on_progress=progress, **_matte_options(args))
    print(summary.describe())
    return 0


def _matte_options(args) -> dict:
    """The ``iconmat matte`` options shared by one input and a job of many (keyword arguments of matte_sequence)."""
    return dict(
        mask=args.mask,
        reference_frame=args.reference_frame,
        reference_image=args.reference,
        engine=args.engine,
        engine_params=_engine_options(args.engine_option) or None,
        formats=_split_list(args.format) or ("png",),
        frame_range=args.range,
        direction=args.direction,
        order=args.order,
        prompt_kind=args.prompt_kind,
        cache_dir=args.cache_dir,
        colour=args.colour,
        explain=args.explain,
    )


def _cmd_matte_job(args) -> int:
    from .core.pipeline.cluster import matte_inputs

    with _progress(args) as progress:
        results = matte_inputs(
            args.input,
            out_dir=args.out,
            workers=args.workers,
            scheduler=args.scheduler,
            on_progress=_JobBar(progress),
            **_matte_options(args),
        )
    errors = {r.error for r in results if r.error is not None}
    if len(results) > 1 and len(errors) == 1 and all(r.error for r in results):
        raise InputError(f"every input failed: {errors.pop()}")  # one mistake, said once
    for result in results:
        print(result.describe() if len(results) > 1 or result.summary is None else result.summary.describe())
    failed = sum(r.error is not None for r in results)
    if len(results) > 1:
        print(f"{len(results) - failed} of {len(results)} inputs done" + (f", {failed} failed" if failed else "") + ".")
    return 2 if failed else 0


class _JobBar:
    """``on_progress(done, total, status)`` of a job: one bar, inputs done / running in its description."""

    def __init__(self, progress: _Progress) -> None:
        self.progress = progress

    def __call__(self, done: int, total: int, status: dict) -> None:
        counts = {s: sum(v == s for v in status.values()) for s in ("done", "running", "failed")}
        text = f"inputs {counts['done']}/{len(status)} done, {counts['running']} running"
        self.progress.desc = text + (f", {counts['failed']} failed" if counts["failed"] else "")
        if self.progress.bar is not None:
            self.progress.bar.set_description(self.progress.desc, refresh=False)
        self.progress(done, total)


def _cmd_demo(args) -> int:
    from .core.pipeline.run import run_demo

    with _progress(args) as progress:
        demo = run_demo(args.out, frames=args.frames, size=args.size, seed=args.seed, on_progress=progress)
    print(f"Synthetic video with ground truth in {demo.sample_dir}.")
    print(demo.run.describe())
    print(f"Contact sheet (frame | alpha | composite): {demo.sheet}")
    print(demo.quality())
    return 0


def _cmd_engines(args) -> int:
    from .core.registry import engine_statuses

    rows = [("name", "needs", "ready", "detail")]
    rows += [(name, s.needs, "yes" if s.ready else "no", _one_line(s.detail)) for name, s in engine_statuses().items()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[3]]).rstrip())
    return 0


def _cmd_synth(args) -> int:
    from .core.evaluation.synth import write_synth

    out = write_synth(args.kind, args.out, frames=args.frames, size=args.size, seed=args.seed)
    print(
        f"Wrote a synthetic {args.kind} to {out}: frames/ (RGB), alpha/ (16-bit ground-truth alpha), "
        "fg/ (foreground colours), reference_mask.png (the mask of frame 0) and reference.json."
    )
    print(f"Matte it with: iconmat matte {out / 'frames'} --reference-frame 0 --mask {out / 'reference_mask.png'} --out {out / 'matte'}")
    return 0


def _cmd_eval(args) -> int:
    from .core.evaluation.evaluate import evaluate_folders
    from .core.pipeline.run import write_json

    report = evaluate_folders(args.pred, args.gt, args.trimap)
    print(report.format_table(per_frame=args.per_frame))
    if args.json is not None:
        print(f"Wrote {write_json(args.json, report.to_json())}")
    return 0


def _cmd_bench(args) -> int:
    from .core.evaluation.bench import check_targets, run_bench

    engines = _split_list(args.engines) or [DEFAULT_ENGINE]
    from .core.pipeline.run import prepare_output_file

    outputs = [(prepare_output_file(p), what) for p, what in ((args.json, "json"), (args.plot, "plot"), (args.sheet, "sheet")) if p]
    with _progress(args, desc="bench") as progress:
        report = run_bench(
            args.folders, engines=engines, max_frames=args.max_frames, on_progress=progress,
            engine_params=_bench_engine_options(args.engine_option, engines),
        )  # fmt: skip
    print(report.format_table())
    for path, what in outputs:
        try:
            if what == "json":
                report.save_json(path)
            elif what == "plot":
                report.plot(path)
            else:
                report.contact_sheet(path)
        except OSError as exc:
            raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
        print(f"Wrote {path}")
    if args.check:
        lines = [line for engine in engines for line in check_targets(report, engine=engine)]
        for line in lines:
            print(line)
        if any(line.startswith("MISS") for line in lines):
            return 1
    return 0


def _model_options(values) -> dict | None:
    """``--model-option KEY=VALUE`` pairs (parsed like ``--engine-option``)."""
    return _engine_options(values, what="--model-option values") or None


@contextlib.contextmanager
def _resume_hint(out):
    """Ctrl-C during training: say how to continue."""
    try:
        yield
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"the newest checkpoint in {out} is kept; the same command with --resume continues from it") from None


def _cmd_train(args) -> int:
    from .core.engines.iconmat.training import train_decoder

    with _progress(args, unit="step", desc="train") as progress, _resume_hint(args.out):
        summary = train_decoder(
            args.data_root, datasets=_split_list(args.dataset), out_dir=args.out, steps=args.steps,
            batch_size=args.batch_size, lr=args.lr, warmup=args.warmup, timestep=args.timestep,
            resolution=args.resolution, sd_model=args.sd_model, tiny=args.tiny, variant=args.variant,
            seed=args.seed, model_options=_model_options(args.model_option), resume=args.resume,
            save_every=args.save_every, keep=args.keep, device=args.device, on_progress=progress,
        )  # fmt: skip
    print(summary.describe())
    return 0


def _cmd_checkpoint(args) -> int:
    from .core.engines.iconmat.checkpoint import convert_checkpoint, inspect_checkpoint

    if args.action == "inspect":
        report = inspect_checkpoint(args.path)
        print(report.format())
        return 0 if report.ok else 1
    out, digest = convert_checkpoint(args.path, args.out)
    print(f"Wrote {out}")
    print(f"sha256 {digest}")
    return 0


# ---------------------------------------------------------------- parser


_MATTE_EXAMPLES = """\
examples:
  iconmat matte clip.mp4 --reference-frame 0 --mask mask0.png --out out/
      out/alpha/00000.png ... one 8-bit alpha per frame, out/iconmat-run.json
  iconmat matte frames/ --reference-frame 120 --mask m.png --out out/ --format png16,tiff --range 100:200
  iconmat matte stack.tif --reference ref.png --mask ref_mask.png --out out/ --format rgba
  iconmat matte photos/ --reference-frame 0 --mask m.png --out out/ --order collection --cache-dir ~/.cache/iconmat
  iconmat matte 'clips/*.mp4' --reference ref.png --mask ref_mask.png --out out/ --workers 4
      one job on a local Dask cluster of 4 processes: out/<clip-name>/alpha/... per input
  iconmat matte photos/ --reference-frame 0 --mask m.png --out out/ --order collection --scheduler tcp://host:8786

resume: a run that was interrupted (Ctrl-C, a full disk, a crash, kill -9) continues where it
stopped when the same command is run again; one run at a time may write into an output folder.

output formats (--format, repeatable or comma-separated; alpha/NNNNN.png is always written):
""" + "\n".join(f"  {name:<6} {text}" for name, text in FORMAT_HELP.items())

_DEMO_EXAMPLES = """\
examples:
  iconmat demo                       # ./iconmat-demo: sample/, matte/, contact_sheet.png
  iconmat demo --out /tmp/d --frames 8
"""

_ENGINES_EXAMPLES = """\
examples:
  iconmat engines
"""

_SYNTH_EXAMPLES = """\
examples:
  iconmat synth video --out synth/ --frames 40 --size 640x360
  iconmat synth collection --out coll/ --frames 12 --seed 3

layout: frames/NNNNN.png, alpha/NNNNN.png (16-bit ground truth), fg/NNNNN.png,
reference_mask.png (frame 0's alpha > 0.5) and reference.json
"""

_EVAL_EXAMPLES = """\
examples:
  iconmat eval --pred out/alpha --gt synth/alpha
  iconmat eval --pred out/alpha --gt gt/alpha --trimap gt/trimap --json scores.json --per-frame

files are paired by name stem; SAD, Grad and Conn are sums / 1000, MSE a plain mean
"""

_BENCH_EXAMPLES = """\
examples:
  iconmat bench synth/                                   # a folder from 'iconmat synth'
  iconmat bench synth/ davis/ --engines classical --json bench.json --plot drift.png --sheet worst.png
  iconmat bench davis/ --max-frames 20 --check           # exit status 1 when a target is missed
  iconmat bench synth/ --engines classical,icmp --engine-option icmp.dinov2=DIR --engine-option icmp.sam=DIR

folders: synth (frames/ alpha/ reference_mask.png), DAVIS (<seq>/frames + <seq>/masks), ICM-57 (image/ alpha/ *.json)
"""

_CHECKPOINT_EXAMPLES = """\
examples:
  iconmat checkpoint inspect 12-0.00800-mat.pth          # exit 0 only if it loads strictly
  iconmat checkpoint convert 12-0.00800-mat.pth ~/.cache/iconmat/iconmatting-decoder.safetensors

checks the IconMatting decoder layout (89 tensors, 21,101,585 trainable parameters); files are read
with torch.load(weights_only=True) or as safetensors
"""


_TRAIN_EXAMPLES = """\
examples:
  iconmat train datasets/ --dataset RM1k,open-images-test --out runs/icm --steps 20000
  iconmat train datasets/ --dataset RM1k --out runs/icm --resume --steps 30000   # continue a run
  iconmat train datasets/ --dataset toy --out runs/tiny --tiny --steps 20        # smoke test, seconds
  iconmat bench datasets/ICM57 --engines iconmat --engine-option decoder=runs/icm/decoder.safetensors

data: DATA_ROOT/NAME.json (image name -> class, sub_class, HalfOrFull) and DATA_ROOT/NAME/image/,
alpha/, optional trimap/ (derived from the alpha when missing) for every --dataset NAME.
out: decoder.safetensors (released key layout), checkpoints/step-N/ (decoder + optimizer, RNG,
settings), train-log.jsonl (loss terms per step). Defaults are the released recipe: Adam, lr 4e-4,
250 warm-up steps from 1e-6, batch 2, timestep 200, resolution 768.
"""


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="iconmat",
        description="In-context alpha matting: mark an object on one reference frame, get its soft alpha in every frame.",
        epilog="run 'iconmat COMMAND --help' for the options and examples of a command",
    )
    parser.add_argument("--version", action="version", version=f"napari-iconmat {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str, examples: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=help, description=help, epilog=examples, formatter_class=argparse.RawDescriptionHelpFormatter
        )

    names = engine_names()

    p = command("matte", "Matte the object marked on one reference in every frame of a video, folder or TIFF stack.", _MATTE_EXAMPLES)
    p.add_argument("input", metavar="INPUT", nargs="+",
                   help="video (.mp4 .mov .avi .mkv .webm .m4v), image folder, TIFF stack or image; "
                        "several (or a quoted glob) run as one job into DIR/<input-name>/")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created; must not be a file)")
    ref = p.add_mutually_exclusive_group(required=True)
    ref.add_argument("--reference-frame", type=int, metavar="N", help="index of the reference frame in INPUT (0-based)")
    ref.add_argument("--reference", metavar="IMAGE", help="an external reference image instead of a frame of INPUT")
    p.add_argument("--mask", required=True, metavar="MASK", help="mask, soft alpha or scribble image of the reference's size")
    p.add_argument("--engine", choices=names, default=DEFAULT_ENGINE, help=f"matting engine (default {DEFAULT_ENGINE}; see 'iconmat engines')")
    p.add_argument("--engine-option", action="append", metavar="KEY=VALUE", help="engine parameter, repeatable (e.g. working_size=480)")
    p.add_argument("--format", action="append", metavar="FMT", help=f"output format(s): {', '.join(FORMATS)} (default png)")
    p.add_argument("--range", metavar="A:B", help="frames to output as Python slice bounds: 10:50, :20, or --range=-10: (the last 10); default all")
    p.add_argument("--direction", choices=DIRECTIONS, default="both", help="propagate from the reference frame (default both)")
    p.add_argument("--order", choices=_ORDERS, default="auto",
                   help="auto: a sequence when all frames share one size, else a collection of independent images")
    p.add_argument("--prompt-kind", choices=PROMPT_KINDS, default="auto", help="how to read MASK (default auto)")
    p.add_argument("--cache-dir", metavar="DIR", help="reuse / store the encoded reference query in this folder")
    p.add_argument("--colour", choices=("straight", "premultiplied"), default="straight",
                   help="colour of rgba/prores/webm: the foreground as is, or multiplied by the alpha (default straight)")
    p.add_argument("--workers", type=_positive_int, metavar="N", help="run on a local Dask cluster of N processes (1 thread each)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on the Dask cluster at ADDRESS (e.g. tcp://10.0.0.5:8786)")
    p.add_argument("--explain", action="store_true", help="also write the engine's explain maps as heatmaps in DIR/explain/ (iconmat engine)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_matte)

    p = command("demo", "Make a small synthetic video with ground truth, matte it and draw a contact sheet.", _DEMO_EXAMPLES)
    p.add_argument("--out", default="iconmat-demo", metavar="DIR", help="output folder (default ./iconmat-demo)")
    p.add_argument("--frames", type=_positive_int, default=24, metavar="N", help="number of frames, at least 2 (default 24)")
    p.add_argument("--size", type=_size, default=(480, 270), metavar="WxH", help="frame size (default 480x270)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_demo)

    p = command("engines", "List the matting engines, what they need and whether they can run here.", _ENGINES_EXAMPLES)
    p.set_defaults(func=_cmd_engines)

    p = command("synth", "Write a synthetic video or image collection with exact ground-truth alpha.", _SYNTH_EXAMPLES)
    p.add_argument("kind", choices=("video", "collection"), help="a video (one object moving) or a collection (poses, look-alikes)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--frames", type=_positive_int, metavar="N", help="number of frames (default 40 for video, 12 for collection)")
    p.add_argument("--size", type=_size, metavar="WxH", help="frame size (default 640x360 for video, 512x384 for collection)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.set_defaults(func=_cmd_synth)

    p = command("eval", "Score a folder of predicted alphas against a folder of ground-truth alphas.", _EVAL_EXAMPLES)
    p.add_argument("--pred", required=True, metavar="DIR", help="predicted alphas")
    p.add_argument("--gt", required=True, metavar="DIR", help="ground-truth alphas, named like the predictions")
    p.add_argument("--trimap", metavar="DIR", help="trimaps (0 / 128 / 255): also score the unknown region")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    p.add_argument("--per-frame", action="store_true", help="print one line per frame after the mean")
    p.set_defaults(func=_cmd_eval)

    p = command("bench", "Matte and score benchmark folders with engines and baselines.", _BENCH_EXAMPLES)
    p.add_argument("folders", nargs="+", metavar="DIR", help="benchmark folders (synth, DAVIS or ICM-57 layout)")
    p.add_argument("--engines", action="append", metavar="A,B", help=f"engines to run, comma-separated (default {DEFAULT_ENGINE}; known: {', '.join(names)})")
    p.add_argument("--engine-option", action="append", metavar="KEY=VALUE",
                   help="parameter of every engine run, or of one with ENGINE.KEY=VALUE (e.g. icmp.sam=DIR); repeatable")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON")
    p.add_argument("--plot", metavar="FILE", help="write a PNG of the per-frame error curves")
    p.add_argument("--sheet", metavar="FILE", help="write a PNG contact sheet of the worst frames")
    p.add_argument("--max-frames", type=_positive_int, metavar="N", help="score at most N frames per sequence")
    p.add_argument("--check", action="store_true", help="print PASS/MISS against the project's targets; exit 1 on a miss")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_bench)

    p = command("train", "Train the IconMatting decoder on datasets in the ICM-57 JSON layout (resumable).", _TRAIN_EXAMPLES)
    p.add_argument("data_root", metavar="DATA_ROOT", help="folder holding NAME.json and NAME/ for every dataset")
    p.add_argument("--dataset", action="append", required=True, metavar="NAME[,NAME]", help="datasets to train on, pooled")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder: checkpoints, decoder, log")
    p.add_argument("--steps", type=_positive_int, default=20000, metavar="N", help="total optimizer steps (default 20000)")
    p.add_argument("--batch-size", type=_positive_int, metavar="B", help="images per step (default 2)")
    p.add_argument("--lr", type=float, metavar="LR", help="Adam learning rate after warm-up (default 4e-4)")
    p.add_argument("--warmup", type=int, metavar="N", help="linear warm-up steps from 1e-6 x lr (default 250)")
    p.add_argument("--timestep", type=int, metavar="T", help="diffusion timestep of the features (default 200)")
    p.add_argument("--resolution", type=_positive_int, metavar="S", help="square input side, a multiple of 64 (default 768; --tiny 64)")
    p.add_argument("--sd-model", metavar="PATH_OR_ID", help="Stable Diffusion 2.1 (768-v) folder or cached hub id")
    p.add_argument("--tiny", action="store_true",
                   help="train the tiny random UNet/VAE config instead of SD 2.1: for smoke tests and CI, not a usable model")
    p.add_argument("--variant", choices=("in-context", "trimap"), help="in-context (default) or the trimap-based variant")
    p.add_argument("--model-option", action="append", metavar="KEY=VALUE", help="another model setting, repeatable (e.g. ensemble_size=1)")
    p.add_argument("--seed", type=int, metavar="S", help="seed of the initialisation, noise and data order (default 0)")
    p.add_argument("--resume", action="store_true", help="continue the newest checkpoint in --out (its settings are reused)")
    p.add_argument("--save-every", type=_positive_int, default=500, metavar="N", help="checkpoint period in steps (default 500)")
    p.add_argument("--keep", type=_positive_int, default=2, metavar="N", help="checkpoints kept, newest first (default 2)")
    p.add_argument("--device", metavar="DEV", help="torch device (default cuda, else mps, else cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = command("checkpoint", "Inspect or convert an IconMatting decoder checkpoint.", _CHECKPOINT_EXAMPLES)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = actions.add_parser("inspect", help="report matched / missing / unexpected / wrong-shape keys (exit 1 unless it loads strictly)",
                           description="Compare a checkpoint with the IconMatting decoder layout.")
    a.add_argument("path", metavar="PATH", help="checkpoint (.pth, .ckpt or .safetensors)")
    a = actions.add_parser("convert", help="write a strictly loadable checkpoint as .safetensors and print its sha256",
                           description="Convert an IconMatting decoder checkpoint to safetensors.")
    a.add_argument("path", metavar="PATH", help="checkpoint (.pth, .ckpt or .safetensors)")
    a.add_argument("out", metavar="OUT.safetensors", help="output file")
    p.set_defaults(func=_cmd_checkpoint)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``iconmat`` command line; returns the exit status.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; None: ``sys.argv[1:]``.

    Returns
    -------
    int
        0 done; 1 ``bench --check`` missed a target or ``checkpoint inspect``
        found a checkpoint that does not load strictly; 2 bad usage or an
        :class:`IconmatError` (one line on stderr); 130 interrupted.
    """
    try:
        try:
            args = _build_parser().parse_args(argv)
        except SystemExit as exc:  # --help, --version and usage errors
            return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            try:
                return args.func(args)
            except IconmatError as exc:
                print(f"iconmat: error: {_one_line(exc)}", file=sys.stderr)
                return 2
    except (KeyboardInterrupt, SystemError) as exc:
        from .core.pipeline.interrupt import is_interrupt

        if not is_interrupt(exc):
            raise
        # numba turns a KeyboardInterrupt into SystemError: the interrupt is what happened
        detail = _one_line(exc) if isinstance(exc, KeyboardInterrupt) else ""
        print(f"iconmat: interrupted{': ' + detail if detail else ''}", file=sys.stderr)
        return 130
    finally:
        if argv is None and threading.current_thread() is threading.main_thread():
            # The command is over: a Ctrl-C during the interpreter's shutdown would only print a traceback.
            signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
