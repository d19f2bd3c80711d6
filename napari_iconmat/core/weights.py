"""Where engines look for learned weights, and how pretrained models are loaded from there.

Two kinds of weights exist:

- *pretrained models* (Stable Diffusion 2.1, DINOv2, SAM, ViTMatte) named by a
  local folder or a Hugging Face hub id. A hub id is resolved through the local
  Hugging Face cache only: nothing is downloaded here (``HF_HUB_OFFLINE`` or not),
  so a missing model fails at once with a message saying where to put it;
- *our own files* (the IconMatting decoder checkpoint, trained checkpoints),
  looked for under the model folder :func:`iconmat_home`.

Importing this module imports neither torch nor transformers: the loaders
below import them when called.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import CheckpointError, InputError, WeightsNotFoundError

__all__ = ["iconmat_home", "resolve_pretrained", "find_model_file", "load_pretrained", "processor_config", "torch_device"]

#: environment variable naming the folder with our own weight files
HOME_ENV = "ICONMAT_HOME"


def iconmat_home() -> Path:
    """The model folder: ``$ICONMAT_HOME``, else ``~/.cache/iconmat``."""
    value = os.environ.get(HOME_ENV)
    if value:
        return Path(value).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "iconmat"


def resolve_pretrained(model: str | os.PathLike, *, what: str, required: tuple[str, ...] = ()) -> Path:
    """Resolve a local folder or a hub id to a local folder, without downloading.

    Parameters
    ----------
    model : str or path
        A folder (``save_pretrained`` layout) or a hub id such as
        ``'stabilityai/stable-diffusion-2-1'``.
    what : str
        What the model is, for the error message (``'Stable Diffusion 2.1'``).
    required : tuple of str
        Relative paths that must exist in the folder (e.g. ``'unet/config.json'``).

    Raises
    ------
    WeightsNotFoundError
        The folder does not exist, misses a required file, or the hub id is not in
        the local Hugging Face cache.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        folder = path
    elif path.exists():
        raise WeightsNotFoundError(f"{what}: {path} is a file, expected a model folder")
    elif _looks_like_hub_id(str(model)):
        folder = _cached_snapshot(str(model), what)
    else:
        raise WeightsNotFoundError(f"{what}: no model folder at {path}")
    missing = [name for name in required if not (folder / name).exists()]
    if missing:
        raise WeightsNotFoundError(f"{what}: {folder} lacks {', '.join(missing)}")
    return folder


def find_model_file(name: str, *, what: str, explicit: str | os.PathLike | None = None) -> Path:
    """Find one of our weight files: ``explicit`` if given, else ``iconmat_home()/name``.

    Raises
    ------
    WeightsNotFoundError
        The file is not there; the message says where to put it.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"{what}: no file at {path}")
        return path
    path = iconmat_home() / name
    if not path.is_file():
        raise WeightsNotFoundError(
            f"{what}: not found; put it at {path} (or set {HOME_ENV}, or pass its path)"
        )
    return path


def torch_device(device: str | None):
    """``device``, or CUDA when available, else the CPU (as a torch.device)."""
    import torch

    if not device:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for, but CUDA is not available here")
    return chosen


def load_pretrained(cls, folder: Path, what: str, **kwargs):
    """``cls.from_pretrained(folder)`` in eval mode, with a one-line :class:`CheckpointError` when it fails.

    transformers' weight-loading progress bar and advisory logs are off meanwhile
    (the CLI draws its own bar), and restored afterwards.
    """
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        return cls.from_pretrained(str(folder), **kwargs).eval()
    except Exception as exc:  # whatever breaks inside from_pretrained is a broken folder the user gave
        first = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"{what}: cannot load a {cls.__name__} from {folder} ({type(exc).__name__}: {first})") from exc
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def processor_config(folder: Path) -> dict:
    """The folder's ``preprocessor_config.json`` as a dict ({} when absent or unreadable)."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~"))


def _cached_snapshot(repo_id: str, what: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - huggingface_hub comes with diffusers
        raise WeightsNotFoundError(f"{what}: {repo_id!r} needs huggingface_hub to be resolved") from None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached (LocalEntryNotFoundError) or a broken cache entry
        raise WeightsNotFoundError(
            f"{what}: {repo_id!r} is not in the local Hugging Face cache; download it on a machine "
            f"with network (`huggingface-cli download {repo_id}`) or pass a local folder"
        ) from None
