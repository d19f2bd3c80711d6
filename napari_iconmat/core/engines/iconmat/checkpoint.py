"""IconMatting decoder checkpoints: strict loading, inspection and conversion to safetensors.

The released checkpoint (``12-0.00800-mat.pth``) is a ``torch.save``-d
PyTorch-Lightning dict with the decoder's 89 tensors under ``'state_dict'``,
keys prefixed ``in_context_decoder.`` (``shared/reference/iconmatting.md`` §6).
A bare state dict, with or without the prefix, and ``.safetensors`` files are
read too. Pickled files are always read with ``torch.load(weights_only=True)``:
a file that needs arbitrary Python objects is refused, never executed.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import CheckpointError, WeightsNotFoundError
from ...io.writers import atomic_write_bytes

__all__ = [
    "DECODER_PREFIX",
    "RELEASED_FILENAME",
    "CONVERTED_FILENAME",
    "CheckpointReport",
    "expected_layout",
    "read_state_dict",
    "inspect_checkpoint",
    "load_decoder_weights",
    "convert_checkpoint",
    "sha256_file",
]

#: key prefix of the decoder tensors in the released checkpoint
DECODER_PREFIX = "in_context_decoder."
#: file name of the released decoder checkpoint
RELEASED_FILENAME = "12-0.00800-mat.pth"
#: file name of its ``iconmat checkpoint convert`` copy
CONVERTED_FILENAME = "iconmatting-decoder.safetensors"

_LIST_LIMIT = 8


def sha256_file(path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def expected_layout(decoder=None) -> dict[str, tuple[int, ...]]:
    """Key → shape of a decoder's state dict (no prefix).

    Parameters
    ----------
    decoder : torch.nn.Module or IconMattingConfig, optional
        A decoder module, or a config whose :class:`InContextDecoder` is built on
        the meta device (no memory). None: the released configuration.
    """
    import torch

    from .config import IconMattingConfig
    from .decoder import InContextDecoder

    if decoder is None or isinstance(decoder, IconMattingConfig):
        with torch.device("meta"):
            decoder = InContextDecoder(decoder or IconMattingConfig())
    return {key: tuple(value.shape) for key, value in decoder.state_dict().items()}


@dataclass
class CheckpointReport:
    """How a checkpoint's tensors compare with a decoder layout.

    Attributes
    ----------
    path : Path
    container : str
        In words: the file format and where the tensors were found.
    matched : list of str
        Keys present with the expected shape.
    missing : list of str
        Expected keys absent from the file.
    unexpected : list of str
        Keys in the file that the layout does not have (or that are not tensors).
    wrong_shape : list of (key, found, expected)
    wrong_dtype : list of (key, found, expected)
        Tensors of the right shape but a kind of number the layer cannot hold
        (weights and statistics must be real floats, ``num_batches_tracked`` an integer).
    parameters : int
        Number of trainable values in the matched tensors (BatchNorm statistics excluded).
    """

    path: Path
    container: str
    matched: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    wrong_shape: list = field(default_factory=list)
    wrong_dtype: list = field(default_factory=list)
    parameters: int = 0

    @property
    def ok(self) -> bool:
        """True when the checkpoint loads strictly into the layout."""
        return not (self.missing or self.unexpected or self.wrong_shape or self.wrong_dtype) and bool(self.matched)

    def problems(self) -> str:
        """The differences in one line (empty when :attr:`ok`)."""
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing ({_preview(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected ({_preview(self.unexpected)})")
        if self.wrong_shape:
            shapes = [f"{k} {list(found)} instead of {list(want)}" for k, found, want in self.wrong_shape]
            parts.append(f"{len(self.wrong_shape)} of the wrong shape ({_preview(shapes)})")
        if self.wrong_dtype:
            kinds = [f"{k} {found} instead of {want}" for k, found, want in self.wrong_dtype]
            parts.append(f"{len(self.wrong_dtype)} of the wrong number type ({_preview(kinds)})")
        if not self.matched and not parts:
            parts.append("no tensor at all")
        return "; ".join(parts)

    def format(self) -> str:
        """A multi-line report for the command line."""
        lines = [
            f"checkpoint: {self.path}",
            f"contents:   {self.container}",
            f"matched:    {len(self.matched)} of {len(self.matched) + len(self.missing) + len(self.wrong_shape) + len(self.wrong_dtype)} decoder tensors"
            f" ({self.parameters:,} trainable parameters)",
        ]
        for title, items in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("wrong shape", [f"{k}: {list(f)} (expected {list(w)})" for k, f, w in self.wrong_shape]),
            ("wrong type", [f"{k}: {f} (expected {w})" for k, f, w in self.wrong_dtype]),
        ):
            lines.append(f"{title + ':':<11} {len(items)}")
            lines.extend(f"  {item}" for item in items[:20])
            if len(items) > 20:
                lines.append(f"  ... and {len(items) - 20} more")
        lines.append("result:     loads strictly" if self.ok else f"result:     does NOT load strictly: {self.problems()}")
        return "\n".join(lines)


def _preview(items) -> str:
    shown = ", ".join(str(i) for i in items[:_LIST_LIMIT])
    return shown + (f", ... ({len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else "")


def read_state_dict(path) -> tuple[dict, str]:
    """Read the tensors of a decoder checkpoint, prefix removed.

    Returns
    -------
    tensors : dict of str -> torch.Tensor (or other values, reported as unexpected)
    container : str
        What the file was, in words.

    Raises
    ------
    WeightsNotFoundError
        No file at ``path``.
    CheckpointError
        Unreadable, not weights-only, or not a dict of tensors.
    """
    import torch

    path = Path(os.fspath(path)).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"decoder checkpoint: no file at {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            raw = load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - a damaged header fails in several ways
            raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from None
        container = "safetensors"
    else:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            refused = [line.strip() for line in str(exc).splitlines() if "global" in line.lower() and "unsupported" in line.lower()]
            if refused:
                raise CheckpointError(
                    f"{path} holds Python objects that are not plain tensors and containers; it is not loaded "
                    f"(torch.load with weights_only=True refused it: {refused[0].split('. Please')[0]})"
                ) from None
            raise CheckpointError(f"{path} is not a readable torch checkpoint (UnpicklingError)") from None
        except Exception as exc:  # noqa: BLE001 - a damaged pickle fails with any error (KeyError, IndexError, struct.error, ...)
            raise CheckpointError(f"{path} is not a readable torch checkpoint ({type(exc).__name__}: {exc})") from None
        if not isinstance(loaded, dict):
            raise CheckpointError(f"{path} holds a {type(loaded).__name__}, expected a dict of tensors")
        if isinstance(loaded.get("state_dict"), dict):
            others = sorted(str(k) for k in loaded if k != "state_dict")
            raw = loaded["state_dict"]
            container = "torch pickle (weights-only), tensors under 'state_dict'"
            if others:
                container += f"; other entries ignored: {', '.join(others[:6])}{' ...' if len(others) > 6 else ''}"
        else:
            raw = loaded
            container = "torch pickle (weights-only), a bare state dict"
    tensors: dict = {}
    prefixed = 0
    for key, value in raw.items():
        key = str(key)
        if key.startswith(DECODER_PREFIX):
            key = key[len(DECODER_PREFIX):]
            prefixed += 1
        if key in tensors:
            key = DECODER_PREFIX + key + " (duplicate)"
        tensors[key] = value
    if prefixed:
        container += f"; {prefixed} keys prefixed '{DECODER_PREFIX}'"
    return tensors, container


def _compare(tensors: dict, layout: dict, path: Path, container: str) -> CheckpointReport:
    import torch

    report = CheckpointReport(path=path, container=container)
    for key, shape in layout.items():
        if key not in tensors:
            report.missing.append(key)
            continue
        value = tensors[key]
        if not isinstance(value, torch.Tensor):
            report.unexpected.append(f"{key} (a {type(value).__name__}, not a tensor)")
            continue
        if tuple(value.shape) != tuple(shape):
            report.wrong_shape.append((key, tuple(value.shape), tuple(shape)))
            continue
        if key.endswith("num_batches_tracked"):
            if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
                report.wrong_dtype.append((key, str(value.dtype).replace("torch.", ""), "an integer"))
                continue
        elif not value.is_floating_point():
            report.wrong_dtype.append((key, str(value.dtype).replace("torch.", ""), "a real float"))
            continue
        report.matched.append(key)
        if value.is_floating_point() and not key.endswith(("running_mean", "running_var")):
            report.parameters += value.numel()
    report.unexpected.extend(key for key in tensors if key not in layout)
    return report


def inspect_checkpoint(path, decoder=None) -> CheckpointReport:
    """Compare a checkpoint with a decoder layout (default: the released one).

    Parameters
    ----------
    path : str or path
    decoder : torch.nn.Module or IconMattingConfig, optional
        See :func:`expected_layout`.

    Raises
    ------
    WeightsNotFoundError, CheckpointError
        The file is missing or unreadable (a readable file that does not match
        gives a report, not an error).
    """
    tensors, container = read_state_dict(path)
    return _compare(tensors, expected_layout(decoder), Path(os.fspath(path)).expanduser(), container)


def load_decoder_weights(decoder, path) -> CheckpointReport:
    """Load a checkpoint into ``decoder`` strictly.

    Every key of the decoder must be present with its shape, and nothing else.

    Raises
    ------
    WeightsNotFoundError
        No file at ``path``.
    CheckpointError
        The file is unreadable or does not match, naming what is missing,
        unexpected or of the wrong shape.
    """
    tensors, container = read_state_dict(path)
    report = _compare(tensors, expected_layout(decoder), Path(os.fspath(path)).expanduser(), container)
    if not report.ok:
        raise CheckpointError(
            f"{report.path} does not fit the IconMatting decoder: {report.problems()} "
            f"(run 'iconmat checkpoint inspect {report.path}' for the full list)"
        )
    decoder.load_state_dict({key: tensors[key] for key in report.matched}, strict=True)
    return report


def convert_checkpoint(path, out, decoder=None) -> tuple[Path, str]:
    """Write a strictly loadable checkpoint as ``.safetensors`` (released key names).

    Parameters
    ----------
    path : str or path
        The released ``.pth`` (or any readable decoder checkpoint).
    out : str or path
        Output file; must end in ``.safetensors``. Written atomically.
    decoder : torch.nn.Module or IconMattingConfig, optional
        The layout to check against (default: the released one).

    Returns
    -------
    out : Path
    sha256 : str
        Hex SHA-256 of the written file.

    Raises
    ------
    CheckpointError
        The checkpoint does not load strictly, or ``out`` is not a ``.safetensors`` path.
    """
    from safetensors.torch import save

    out = Path(os.fspath(out)).expanduser()
    if out.suffix != ".safetensors":
        raise CheckpointError(f"the converted checkpoint must be a .safetensors file, got {out}")
    if out.is_dir():
        raise CheckpointError(f"cannot write {out}: it is a folder")
    tensors, container = read_state_dict(path)
    report = _compare(tensors, expected_layout(decoder), Path(os.fspath(path)).expanduser(), container)
    if not report.ok:
        raise CheckpointError(f"{report.path} is not converted: it does not fit the IconMatting decoder: {report.problems()}")
    payload = {DECODER_PREFIX + key: tensors[key].detach().cpu().contiguous().clone() for key in report.matched}
    metadata = {"format": "napari-iconmat decoder/1", "source": Path(path).name, "source_sha256": sha256_file(path)}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, save(payload, metadata=metadata))
    except OSError as exc:
        raise CheckpointError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out, sha256_file(out)
