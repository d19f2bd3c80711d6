"""Training the IconMatting decoder (``iconmat train``): the released recipe, resumable.

The recipe (``iconmatting.md`` §4): Stable Diffusion frozen, only the decoder
trained, Adam (lr 4e-4, default betas, no weight decay), the learning rate
warmed up linearly over 250 steps from 1e-6 x lr to lr and then constant (the
released ``LambdaLinearScheduler``, stepped per iteration), the losses of
:mod:`.losses` summed over the batch, pairs from :mod:`.data`. Training stops
with :class:`~.losses.LossExplosionError` when the loss is NaN or above 1e4.

The output folder::

    OUT/decoder.safetensors                  the latest decoder (released key layout)
    OUT/checkpoints/step-NNNNNNNN/           written every ``save_every`` steps and at the end
        decoder.safetensors                  decoder weights, keys 'in_context_decoder.*'
        state.safetensors                    Adam state, torch RNG states; metadata: step,
                                             settings, model config (JSON)
    OUT/train-log.jsonl                      one line per step: step, lr, loss terms, seconds

A checkpoint folder is written under a temporary name and renamed when
complete, so a killed run leaves either a whole checkpoint or none. Resuming
loads the newest one and continues exactly: same weights, optimizer moments,
RNG states, and the same batches (they depend only on the seed and the step).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from ...errors import InputError
from ...io.writers import atomic_write_bytes
from .engine import MAX_SEED, _pick_device

__all__ = [
    "CHECKPOINT_PREFIX",
    "VARIANTS",
    "TrainSummary",
    "latest_checkpoint",
    "save_decoder",
    "train_decoder",
    "warmup_factor",
]

#: prefix of every decoder key in a checkpoint, as in the released file (checkpoint.DECODER_PREFIX)
CHECKPOINT_PREFIX = "in_context_decoder."
#: model variants: the released in-context model, the supplement's trimap-based one
VARIANTS = ("in-context", "trimap")
#: released recipe
DEFAULT_LR = 4e-4
DEFAULT_WARMUP = 250
WARMUP_START = 1e-6
DEFAULT_BATCH_SIZE = 2
DEFAULT_STEPS = 20000  # the paper's 20k iterations
DEFAULT_SAVE_EVERY = 500

_STATE_FORMAT = "iconmat-train-state/1"
_CHECKPOINTS = "checkpoints"
_LOG = "train-log.jsonl"
# settings a resumed run must share with the run it continues (None there: take the saved value)
_RESUMABLE = ("batch_size", "lr", "warmup", "timestep", "resolution", "sd_model", "tiny", "variant", "seed", "model_options")


def warmup_factor(step: int, warmup: int, start: float = WARMUP_START) -> float:
    """Learning-rate factor of optimizer step ``step`` (0-based): the released LambdaLinearScheduler.

    ``start + (1 - start) * step / warmup`` while ``step < warmup``, then 1.

    Examples
    --------
    >>> warmup_factor(0, 250), warmup_factor(125, 250), warmup_factor(250, 250)
    (1e-06, 0.5000005, 1.0)
    """
    if step < warmup:
        return start + (1.0 - start) * step / warmup
    return 1.0


@dataclass(frozen=True)
class TrainSummary:
    """What a training run did.

    ``start_step`` is where it began (0, or the resumed checkpoint's step);
    ``losses`` the total loss of each step run here; ``decoder`` the latest
    decoder weights; ``checkpoint`` the last checkpoint folder written;
    ``thin_references`` how many reference masks filled no feature cell.
    """

    out_dir: Path
    start_step: int
    steps: int
    losses: tuple[float, ...]
    seconds: float
    decoder: Path | None
    checkpoint: Path | None
    samples: int
    variant: str
    device: str
    thin_references: int = 0  # references whose mask filled no feature cell (best-covered cells used)

    def describe(self) -> str:
        """A short paragraph for the command line."""
        ran = self.steps - self.start_step
        if ran <= 0:
            return f"Nothing to do: {self.out_dir} is already at step {self.start_step} of {self.steps}."
        head = f"Trained the {self.variant} decoder for {ran} step(s)"
        head += f" (steps {self.start_step + 1}-{self.steps})" if self.start_step else ""
        head += f" on {self.samples} image(s), {self.device}, {self.seconds / ran:.3g} s/step."
        n = min(10, len(self.losses) // 2)
        loss = f" Loss {self.losses[-1]:.4g} at the last step." if self.losses else ""
        if n:
            loss = f" Loss: mean of the first {n} steps {_mean(self.losses[:n]):.4g}, of the last {n} {_mean(self.losses[-n:]):.4g}."
        where = f" Decoder: {self.decoder} (checkpoint {self.checkpoint})."
        thin = ""
        if self.thin_references:
            thin = (f" {self.thin_references} reference mask(s) filled no feature cell completely: "
                    "their best-covered cells were the query.")  # fmt: skip
        return head + loss + thin + where


def _mean(values) -> float:
    return sum(values) / len(values) if values else float("nan")


# ---------------------------------------------------------------- checkpoints


def _step_dir(out: Path, step: int) -> Path:
    return out / _CHECKPOINTS / f"step-{step:08d}"


def latest_checkpoint(out_dir) -> Path | None:
    """The newest complete checkpoint folder under ``out_dir/checkpoints``, or None."""
    folder = Path(out_dir) / _CHECKPOINTS
    if not folder.is_dir():
        return None
    found = []
    for path in folder.iterdir():
        name = path.name
        if path.is_dir() and name.startswith("step-") and name[5:].isdigit():
            if (path / "decoder.safetensors").is_file() and (path / "state.safetensors").is_file():
                found.append((int(name[5:]), path))
    return max(found)[1] if found else None


def _decoder_tensors(decoder) -> dict:
    return {CHECKPOINT_PREFIX + k: v.detach().cpu().contiguous().clone() for k, v in decoder.state_dict().items()}


def _safetensors_bytes(tensors: dict, metadata: dict) -> bytes:
    """``safetensors.torch.save`` with the metadata keys in sorted order.

    safetensors writes its metadata from a hash map, in an order that changes
    from one process to the next; sorted, equal weights give equal files.
    """
    import struct

    from safetensors.torch import save as save_safetensors

    data = save_safetensors(tensors, metadata=metadata)
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > length:  # cannot happen (same content); keep the library's bytes rather than break the file
        return data
    return data[:8] + text + b" " * (length - len(text)) + data[8 + length :]


def _decoder_bytes(decoder, step: int | None = None) -> bytes:
    metadata = {"format": "pt"} if step is None else {"format": "pt", "step": str(step)}
    return _safetensors_bytes(_decoder_tensors(decoder), metadata)


def save_decoder(decoder, path) -> Path:
    """Write a decoder's weights as ``.safetensors`` in the released key layout, atomically.

    Every key of ``decoder.state_dict()`` (BatchNorm running statistics included)
    is stored as ``in_context_decoder.<key>``: the engine loads the file with
    ``--engine-option decoder=PATH`` (:func:`.checkpoint.load_decoder_weights`).
    """
    return atomic_write_bytes(Path(path), _decoder_bytes(decoder))


def _state_tensors(optimizer, params) -> tuple[dict, dict]:
    """Adam state as flat tensors + the JSON-able rest (param groups, scalar entries)."""
    import torch

    index = {id(p): i for i, p in enumerate(params)}
    tensors, scalars = {}, {}
    for param, state in optimizer.state.items():
        i = index[id(param)]
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optimizer/{i}/{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars[f"{i}/{key}"] = value
    groups = []
    for group in optimizer.param_groups:
        groups.append({k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items() if k != "params"})
    tensors["rng/torch_cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = state
    return tensors, {"param_groups": groups, "scalars": scalars}


def _save_checkpoint(out: Path, step: int, decoder, optimizer, params, meta: dict, keep: int) -> Path:
    decoder_bytes = _decoder_bytes(decoder, step)
    tensors, optim_meta = _state_tensors(optimizer, params)
    metadata = {
        "format": _STATE_FORMAT,
        "step": str(step),
        "settings": json.dumps(meta["settings"]),
        "config": json.dumps(meta["config"]),
        "optimizer": json.dumps(optim_meta),
    }
    state_bytes = _safetensors_bytes(tensors, metadata)
    final = _step_dir(out, step)
    tmp = final.with_name(f".{final.name}.tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / "decoder.safetensors").write_bytes(decoder_bytes)
        (tmp / "state.safetensors").write_bytes(state_bytes)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        atomic_write_bytes(out / "decoder.safetensors", decoder_bytes)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(f"cannot write checkpoint {final}: {exc.strerror or exc}") from None
    older = sorted(p for p in (out / _CHECKPOINTS).glob("step-*") if p.is_dir() and p != final)
    for path in older[: max(0, len(older) - (keep - 1))]:
        shutil.rmtree(path, ignore_errors=True)
    return final


def _read_state(folder: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    path = folder / "state.safetensors"
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # a damaged file is the user's to fix: say which
        raise InputError(f"cannot read training state {path}: {exc}") from None
    if metadata.get("format") != _STATE_FORMAT:
        raise InputError(f"{path} is not an iconmat training state (format {metadata.get('format')!r})")
    return tensors, metadata


def _restore(folder: Path, decoder, optimizer, params) -> int:
    import torch

    from .checkpoint import load_decoder_weights

    load_decoder_weights(decoder, folder / "decoder.safetensors")  # strict, the engine's loader
    tensors, metadata = _read_state(folder)
    try:
        return _restore_state(tensors, metadata, optimizer, params)
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError, AttributeError) as exc:
        raise _damaged(folder, exc) from None


def _damaged(folder: Path, exc: Exception) -> InputError:
    return InputError(
        f"training state {folder} is damaged ({type(exc).__name__}: {exc}); "
        f"delete that folder to resume from the checkpoint before it"
    )


def _restore_state(tensors: dict, metadata: dict, optimizer, params) -> int:
    import torch

    step = int(metadata["step"])
    if step < 1:
        raise ValueError(f"step {step}")
    optim_meta = json.loads(metadata["optimizer"])
    state = {}
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, i, name = key.split("/", 2)
            state.setdefault(int(i), {})[name] = value
    for key, value in optim_meta["scalars"].items():
        i, name = key.split("/", 1)
        state.setdefault(int(i), {})[name] = value
    groups = [dict(g, params=list(range(len(params)))) for g in optim_meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})  # moves the moments to the params' device
    torch.set_rng_state(tensors["rng/torch_cpu"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng/cuda/"))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    return step


# ---------------------------------------------------------------- model


def _model_config(settings: dict):
    from dataclasses import fields

    from .config import IconMattingConfig

    changes = dict(settings["model_options"] or {})
    # img_chans follows --variant (3 for in-context, 4 with the trimap)
    known = {f.name for f in fields(IconMattingConfig)} - {"sd_model", "unet_config", "vae_config", "scheduler_config", "img_chans"}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise InputError(f"unknown model option {unknown[0]!r}; known: {', '.join(sorted(known))}")
    changes.update({k: settings[k] for k in ("resolution", "timestep") if settings[k] is not None})
    try:
        config = IconMattingConfig.tiny(**changes) if settings["tiny"] else IconMattingConfig(**changes)
    except (ValueError, TypeError) as exc:
        raise InputError(f"invalid model settings: {exc}") from None
    return config


def _build_model(settings: dict, config):
    from .model import InContextMatting, TrimapMatting

    cls = InContextMatting if settings["variant"] == "in-context" else TrimapMatting
    if settings["tiny"]:
        return cls(config)
    return cls.from_pretrained(settings["sd_model"] or config.sd_model, None, config)


def _config_json(model) -> dict:
    return json.loads(json.dumps(asdict(model.config), default=list))


# ---------------------------------------------------------------- training


def _settings(out: Path, resume: bool, given: dict) -> tuple[dict, Path | None]:
    """Settings of this run: given values, else (when resuming) the saved ones, else the defaults."""
    defaults = {
        "batch_size": DEFAULT_BATCH_SIZE, "lr": DEFAULT_LR, "warmup": DEFAULT_WARMUP, "timestep": None,
        "resolution": None, "sd_model": None, "tiny": False, "variant": "in-context", "seed": 0, "model_options": {},
    }  # fmt: skip
    checkpoint = latest_checkpoint(out)
    if checkpoint is not None and not resume:
        raise InputError(
            f"{out} already holds a training run (checkpoint {checkpoint.name}): "
            "pass --resume to continue it, or choose another --out"
        )
    if checkpoint is None:
        if resume and not out.exists():
            raise InputError(f"--resume: {out} does not exist; leave out --resume to start a new run")
        if resume:
            raise InputError(f"--resume: {out} holds no complete checkpoint to resume from")
        settings = {k: (given[k] if given.get(k) is not None else v) for k, v in defaults.items()}
        settings["datasets"] = given["datasets"]
        return settings, None
    _, metadata = _read_state(checkpoint)
    try:
        saved = json.loads(metadata["settings"])
        if not isinstance(saved, dict) or not all(key in saved for key in (*_RESUMABLE, "datasets")):
            raise ValueError("the settings are incomplete")
    except (ValueError, TypeError, KeyError) as exc:
        raise _damaged(checkpoint, exc) from None
    if list(given["datasets"]) != list(saved["datasets"]):
        raise InputError(f"--resume: {out} was trained on --dataset {','.join(saved['datasets'])}, got {','.join(given['datasets'])}")
    settings = dict(saved)
    for key in _RESUMABLE:
        value = given.get(key)
        if value is None or (key == "tiny" and value is False) or (key == "model_options" and not value):
            continue
        if value != saved[key]:
            flag = "--" + key.replace("_", "-")
            before = "the default" if saved[key] is None else saved[key]
            raise InputError(f"--resume: {out} was trained with {flag} {before}, got {value}; leave it out or start a new --out")
    return settings, checkpoint


def train_decoder(
    data_root,
    *,
    datasets,
    out_dir,
    steps: int = DEFAULT_STEPS,
    batch_size: int | None = None,
    lr: float | None = None,
    warmup: int | None = None,
    timestep: int | None = None,
    resolution: int | None = None,
    sd_model: str | None = None,
    tiny: bool = False,
    variant: str | None = None,
    seed: int | None = None,
    model_options: dict | None = None,
    resume: bool = False,
    save_every: int = DEFAULT_SAVE_EVERY,
    keep: int = 2,
    device: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_step: Callable[[int, dict], None] | None = None,
) -> TrainSummary:
    """Train the IconMatting decoder on datasets in the ICM-57 JSON layout.

    Parameters
    ----------
    data_root : str or Path
        Holds ``<NAME>.json`` and ``<NAME>/image|alpha[|trimap]`` per dataset
        (see :mod:`.data`).
    datasets : sequence of str
        Dataset names, their images pooled (groups span datasets).
    out_dir : str or Path
        Output folder (see the module docstring). Created if missing.
    steps : int
        Total optimizer steps, counted from the start of the run being resumed
        (default 20000, the paper's).
    batch_size, lr, warmup : optional
        Default 2, 4e-4 and 250 (the released recipe); when resuming, the saved
        values (a different value is an error).
    timestep, resolution : int, optional
        Diffusion timestep (released 200) and input side S (released 768; the
        tiny config 64), passed through :class:`IconMattingConfig`.
    sd_model : str, optional
        Stable Diffusion 2.1 (768-v) folder or cached hub id; default the hub id.
    tiny : bool
        Train the tiny random UNet/VAE config instead (smoke tests, CI; seconds).
    variant : {'in-context', 'trimap'}
        The released model (reference + mask + target) or the trimap-based one
        (target + its trimap). Default 'in-context'.
    seed : int, optional
        Seeds the decoder initialisation, the noise and the data (default 0).
    model_options : dict, optional
        Further :class:`IconMattingConfig` fields, e.g. ``{'ensemble_size': 1}``.
    resume : bool
        Continue the newest checkpoint in ``out_dir``. Without it, an
        ``out_dir`` that holds a checkpoint is an error.
    save_every : int
        Checkpoint period in steps (default 500); the last step is always saved.
    keep : int
        Checkpoint folders kept (default 2, the newest).
    device : str, optional
        Torch device; default cuda, else mps, else cpu.
    on_progress : callable(done, total), optional
        Called after every step (and once at the start).
    on_step : callable(step, losses), optional
        Called after every step with the step number (1-based) and the float
        loss terms.

    Returns
    -------
    TrainSummary

    Raises
    ------
    InputError
        Bad data or settings, an output folder that already holds a run (without
        ``resume``), or settings that differ from the run being resumed.
    WeightsNotFoundError
        Stable Diffusion is not on this machine (not with ``tiny``).
    LossExplosionError
        The loss became NaN or exceeded 1e4; the last checkpoint is kept.
    """
    if variant is not None and variant not in VARIANTS:
        raise InputError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    for name, value, low in (("steps", steps, 1), ("save_every", save_every, 1), ("keep", keep, 1),
                             ("batch_size", batch_size, 1), ("warmup", warmup, 0)):  # fmt: skip
        if value is not None and (int(value) != value or value < low):
            raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
    if lr is not None and not (math.isfinite(lr) and 0 < lr <= 1):
        raise InputError(f"lr must be a positive number of at most 1, got {lr!r}")
    if seed is not None and (isinstance(seed, bool) or int(seed) != seed or not 0 <= seed <= MAX_SEED):
        raise InputError(f"seed must be an integer from 0 to {MAX_SEED}, got {seed!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, expected a folder")
    given = dict(batch_size=batch_size, lr=lr, warmup=warmup, timestep=timestep, resolution=resolution,
                 sd_model=sd_model, tiny=tiny, variant=variant, seed=seed, model_options=model_options,
                 datasets=list(datasets))  # fmt: skip
    settings, checkpoint = _settings(out, resume, given)

    import torch

    from .data import InContextPairs
    from .losses import check_loss, matting_losses

    config = _model_config(settings)
    device = _pick_device(str(device or "auto"))  # cuda > mps > cpu; InputError if unusable
    # the data first: a bad dataset fails before Stable Diffusion is loaded
    pairs = InContextPairs(data_root, settings["datasets"], resolution=config.resolution, seed=settings["seed"])
    torch.manual_seed(settings["seed"])
    model = _build_model(settings, config)
    model = model.to(device)
    model.train()
    params = [p for p in model.decoder.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=settings["lr"])
    start = 0
    if checkpoint is not None:
        start = _restore(checkpoint, model.decoder, optimizer, params)
    else:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create --out {out}: {exc.strerror or exc}") from None
        torch.manual_seed(settings["seed"])  # the same noise however the model was built
    for stale in (out / _CHECKPOINTS).glob(".step-*.tmp"):  # a checkpoint a killed run did not finish
        shutil.rmtree(stale, ignore_errors=True)
    meta = {"settings": settings, "config": _config_json(model)}
    log_path = out / _LOG
    _truncate_log(log_path, start)

    total = int(steps)
    losses: list[float] = []
    thin = 0
    last_dir = checkpoint
    began = time.perf_counter()
    if on_progress is not None:
        on_progress(min(start, total), total)
    in_context = settings["variant"] == "in-context"
    def load(step: int):
        return loader.submit(pairs.batch, step, settings["batch_size"], references=in_context)

    try:
        log = open(log_path, "a", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write the training log {log_path}: {exc.strerror or exc}") from None
    # one loader thread reads and resizes the next batch while this one trains (batches depend on the step only)
    with log, ThreadPoolExecutor(max_workers=1) as loader, _clear_errors(out, settings, config):
        pending = load(start) if start < total else None
        for step in range(start, total):
            t0 = time.perf_counter()
            batch = pending.result()
            if step + 1 < total:
                pending = load(step + 1)
            tensors = {k: torch.from_numpy(batch[k]).to(device) for k in ("image", "alpha", "trimap")}
            if in_context:
                reference = torch.from_numpy(batch["reference_image"]).to(device)
                guidance = torch.from_numpy(batch["reference_alpha"]).to(device)
                # forward() in two calls, to count thin reference masks instead of warning at every step
                query = model.encode_reference(reference, guidance, warn=False)
                thin += sum(bool(f) for f in query.fallback)
                pred = model.matte(tensors["image"], query)
            else:
                pred = model(tensors["image"], tensors["trimap"])
            terms = matting_losses(pred.float(), tensors["alpha"], tensors["trimap"], binary=torch.from_numpy(batch["binary"]))
            check_loss(terms["total"], step=step + 1, terms=terms, batch_size=settings["batch_size"])
            factor = warmup_factor(step, settings["warmup"])
            for group in optimizer.param_groups:
                group["lr"] = settings["lr"] * factor
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            optimizer.step()
            values = {k: float(v.detach()) for k, v in terms.items()}
            losses.append(values["total"])
            record = {"step": step + 1, "lr": settings["lr"] * factor, **values, "seconds": round(time.perf_counter() - t0, 4)}
            log.write(json.dumps(record) + "\n")
            log.flush()
            if (step + 1) % save_every == 0 or step + 1 == total:
                last_dir = _save_checkpoint(out, step + 1, model.decoder, optimizer, params, meta, keep)
            if on_step is not None:
                on_step(step + 1, values)
            if on_progress is not None:
                on_progress(step + 1, total)
    decoder_file = out / "decoder.safetensors"
    return TrainSummary(
        out_dir=out, start_step=start, steps=max(total, start), losses=tuple(losses),
        seconds=time.perf_counter() - began, decoder=decoder_file if decoder_file.is_file() else None,
        checkpoint=last_dir, samples=len(pairs), variant=settings["variant"], device=str(device),
        thin_references=thin,
    )  # fmt: skip


@contextmanager
def _clear_errors(out: Path, settings: dict, config):
    """Running out of GPU memory or disk space in the loop: one clear line, the last checkpoint kept."""
    import torch

    kept = "the last checkpoint is kept; continue with --resume"
    try:
        yield
    except torch.OutOfMemoryError:
        raise InputError(
            f"out of GPU memory training at batch size {settings['batch_size']} and resolution {config.resolution}; "
            f"lower --batch-size or use a larger GPU ({kept})"
        ) from None
    except OSError as exc:  # e.g. a full disk under the log or a checkpoint
        where = f" ({exc.filename})" if exc.filename else ""
        raise InputError(f"training stopped: {exc.strerror or exc}{where}; {kept}") from None


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past ``step`` (written by a run that was killed after its last checkpoint)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            break  # a line cut short by a kill: everything after it is dropped
    atomic_write_bytes(path, "".join(f"{line}\n" for line in kept).encode())
