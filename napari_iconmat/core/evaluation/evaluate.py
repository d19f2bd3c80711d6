"""Compare a folder of predicted alphas with a folder of ground-truth alphas.

This is the engine of ``iconmat eval --pred DIR --gt DIR [--trimap DIR] [--json FILE]``.
Files are paired by name stem (``00001.png`` in one folder with ``00001.jpg`` in
the other), visited in natural order (``2`` before ``10``) and read two at a time,
so folders of any length fit in memory. Each frame gets the image metrics of
:mod:`napari_iconmat.core.evaluation.metrics` over the whole image, and over the trimap's
unknown region when trimaps are given; frames whose names are consecutive
integers also get the temporal metrics dtSSD and MESSDdt.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError
from ..io.readers import apply_orientation, exif_orientation
from .metrics import METRIC_SCALES, _as_alpha, dtssd, image_metrics, j_and_f, messddt, trimap_region

__all__ = ["EvalReport", "evaluate_folders", "read_alpha_file"]

ALPHA_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

_IMAGE_KEYS = ("SAD", "MSE", "Grad", "Conn")
_COLUMN_ORDER = (
    *_IMAGE_KEYS,
    *(f"{key}_unknown" for key in _IMAGE_KEYS),
    "dtSSD",
    "MESSDdt",
    "J",
    "F",
    "J&F",
)
# binary ground truth (a mask, as in DAVIS) is also scored as video object segmentation is
_MASK_SCALES = {"J": "IoU", "F": "boundary", "J&F": "mean"}
# Largest channel spread (fraction of full scale) for which a 3-channel file
# still counts as a grey alpha saved as RGB (JPEG noise included).
_GREY_TOLERANCE = 0.02


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _decode(path: Path) -> np.ndarray:
    """The pixels of an image file as stored (any dtype, 2-D or (H, W, C))."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            image = tifffile.imread(path)
        else:
            # imdecode instead of imread: also works for non-ASCII paths.
            image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
            if image is not None:
                image = apply_orientation(image, exif_orientation(path))  # as read_image does
    except Exception as exc:  # any reader failure is an unreadable user file
        raise InputError(f"cannot read image file {path}: {exc}") from None
    if image is None or image.size == 0:
        raise InputError(f"cannot read image file {path}: not a readable image")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    return image


def _grey_from_colour(image: np.ndarray, path: Path) -> np.ndarray:
    """A 3-channel image whose channels agree, as one channel; else InputError."""
    spread = float((image.max(axis=2).astype(np.float64) - image.min(axis=2)).max())
    full = float(np.iinfo(image.dtype).max) if np.issubdtype(image.dtype, np.integer) else 1.0
    if spread > _GREY_TOLERANCE * full:
        raise InputError(
            f"{path} is a colour image (channels differ by up to {spread:g}); "
            "an alpha must be grey, or the alpha channel of an RGBA image"
        )
    if spread == 0:
        return image[..., 0]
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def _read_alpha(path: Path) -> np.ndarray:
    """(H, W) float64 alpha in [0, 1] from an image file."""
    image = _decode(path)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., 3]  # RGBA / BGRA: the alpha channel
    elif image.ndim == 3 and image.shape[2] == 2:
        image = image[..., 1]  # grey + alpha (TIFF)
    elif image.ndim == 3 and image.shape[2] == 3:
        image = _grey_from_colour(image, path)
    if image.ndim != 2:
        raise InputError(f"{path} must hold one 2-D alpha, got an array of shape {image.shape}")
    try:
        return _as_alpha(image, "alpha")
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def _read_trimap(path: Path) -> np.ndarray:
    """(H, W) trimap as stored (first channel of a colour file)."""
    image = _decode(path)
    if image.ndim == 3 and image.shape[2] in (2, 3, 4):
        image = image[..., 0]
    if image.ndim != 2:
        raise InputError(f"{path} must hold one 2-D trimap, got an array of shape {image.shape}")
    return image


def read_alpha_file(path) -> np.ndarray:
    """Read an alpha matte from an image file.

    Parameters
    ----------
    path : str or os.PathLike
        An 8- or 16-bit grey PNG (or JPEG, BMP), an RGBA PNG (its alpha
        channel is read), a grey image stored as 3 equal channels, or a 2-D
        TIFF (uint8, uint16, or float in [0, 1]).

    Returns
    -------
    (H, W) ndarray of float32 in [0, 1]
        uint8 values divided by 255, uint16 by 65535.

    Raises
    ------
    InputError
        If the file is missing or unreadable, is a colour image, is not 2-D,
        or holds floats outside [0, 1]. The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"alpha file {path} does not exist")
    return _read_alpha(path).astype(np.float32)


def _list_images(folder, what: str) -> dict[str, Path]:
    """Image files of ``folder`` by name stem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{what} folder {folder} does not exist or is not a folder")
    files: dict[str, Path] = {}
    for path in folder.iterdir():
        if not path.is_file() or path.name.startswith(".") or path.suffix.lower() not in ALPHA_SUFFIXES:
            continue
        if path.stem in files:
            raise InputError(
                f"{what} folder {folder} holds two files named '{path.stem}': "
                f"{files[path.stem].name} and {path.name}"
            )
        files[path.stem] = path
    if not files:
        raise InputError(
            f"{what} folder {folder} holds no image files ({', '.join(ALPHA_SUFFIXES)})"
        )
    return files


def _few(names, limit: int = 3) -> str:
    ordered = sorted(names, key=_natural_key)
    shown = ", ".join(ordered[:limit])
    return shown + (", ..." if len(ordered) > limit else "")


def _check_same_names(pred: dict, gt: dict) -> None:
    only_pred = pred.keys() - gt.keys()
    only_gt = gt.keys() - pred.keys()
    if not only_pred and not only_gt:
        return
    parts = []
    if only_gt:
        parts.append(f"{len(only_gt)} only in gt ({_few(only_gt)})")
    if only_pred:
        parts.append(f"{len(only_pred)} only in pred ({_few(only_pred)})")
    raise InputError(
        f"pred and gt folders hold different names: {'; '.join(parts)}; "
        f"pred has {len(pred)} files, gt has {len(gt)}"
    )


def _size(array: np.ndarray) -> str:
    return f"{array.shape[0]}x{array.shape[1]}"


@dataclass
class EvalReport:
    """Metrics of a prediction folder against a ground-truth folder.

    Attributes
    ----------
    rows : list of dict
        One dict per frame, in natural name order: ``"name"`` (the file stem),
        ``"SAD"``, ``"MSE"``, ``"Grad"``, ``"Conn"`` over the whole image;
        ``"SAD_unknown"`` ... ``"Conn_unknown"`` over the trimap's unknown
        region when trimaps were given; ``"dtSSD"`` (with the previous frame)
        and ``"MESSDdt"`` (with the next frame) where that frame exists;
        ``"J"`` (IoU), ``"F"`` (DAVIS boundary F-measure) and ``"J&F"`` where
        the ground truth is binary (a mask).
    summary : dict of str to float
        Mean of each metric over the frames that have it.
    scales : dict of str to str
        Reporting scale of each metric (:data:`~napari_iconmat.core.evaluation.metrics.METRIC_SCALES`);
        ``X_unknown`` has the scale of ``X``.
    pred_dir, gt_dir : str
        The compared folders.
    trimap_dir : str or None
        The trimap folder, None when the unknown region was not scored.
    """

    rows: list[dict]
    summary: dict[str, float]
    scales: dict[str, str] = field(default_factory=lambda: dict(METRIC_SCALES))
    pred_dir: str = ""
    gt_dir: str = ""
    trimap_dir: str | None = None

    @property
    def columns(self) -> list[str]:
        """Metric names present in at least one row, in table order."""
        present = set().union(*(row.keys() for row in self.rows)) if self.rows else set()
        return [key for key in _COLUMN_ORDER if key in present]

    def to_json(self) -> dict:
        """The report as a JSON-serialisable dict.

        Returns
        -------
        dict
            ``{"pred_dir", "gt_dir", "trimap_dir", "n_frames", "scales",
            "summary", "frames"}``; ``frames`` is :attr:`rows`.
        """
        return {
            "pred_dir": self.pred_dir,
            "gt_dir": self.gt_dir,
            "trimap_dir": self.trimap_dir,
            "n_frames": len(self.rows),
            "scales": dict(self.scales),
            "summary": dict(self.summary),
            "frames": [dict(row) for row in self.rows],
        }

    def format_table(self, *, per_frame: bool = False) -> str:
        """The report as a fixed-width text table.

        Parameters
        ----------
        per_frame : bool, optional
            Also print one line per frame after the mean. Default False.

        Returns
        -------
        str
            A header line naming each metric and its scale (for example
            ``SAD[sum/1000]``), a ``mean`` line, then optionally the frames;
            ``-`` where a frame has no value. No trailing newline.
        """
        columns = self.columns
        headers = [f"{key}[{self.scales.get(key.split('_')[0], '?')}]" for key in columns]
        widths = [max(len(header), 10) for header in headers]
        names = [str(row["name"]) for row in self.rows] if per_frame else []
        name_width = max([len("frame"), len("mean"), *map(len, names)])

        def line(label: str, values: dict) -> str:
            cells = [
                f"{values[key]:>{width}.6g}" if key in values else f"{'-':>{width}}"
                for key, width in zip(columns, widths)
            ]
            return "  ".join([f"{label:<{name_width}}", *cells]).rstrip()

        header = "  ".join(
            [f"{'frame':<{name_width}}", *(f"{h:>{w}}" for h, w in zip(headers, widths))]
        )
        lines = [header, line("mean", self.summary)]
        if per_frame:
            lines += [line(str(row["name"]), row) for row in self.rows]
        return "\n".join(lines)


def _is_mask(gt: np.ndarray) -> bool:
    """Whether a ground-truth alpha is binary (only 0 and 1): then J, F and J&F are scored too."""
    return bool(np.all((gt == 0) | (gt == 1)))


def evaluate_folders(
    pred_dir,
    gt_dir,
    trimap_dir=None,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> EvalReport:
    """Score every predicted alpha of a folder against the ground truth of the same name.

    Parameters
    ----------
    pred_dir, gt_dir : str or os.PathLike
        Folders of alpha images (see :func:`read_alpha_file` for the formats).
        Files are paired by name stem; extensions may differ.
    trimap_dir : str or os.PathLike, optional
        Folder of trimaps named like the gt files (uint8: 0 background,
        128 unknown, 255 foreground; see
        :func:`~napari_iconmat.core.evaluation.metrics.trimap_region`). None (default):
        only whole-image metrics.
    on_progress : callable, optional
        Called as ``on_progress(done, total)`` after each frame.

    Returns
    -------
    EvalReport
        Per-frame rows and their means. Temporal metrics (dtSSD for frame t
        with t - 1, MESSDdt for t with t + 1) are added when there are at
        least 2 frames and every name is an integer, for each pair of names
        that are consecutive integers and have the same size. Their means
        are over the frames that have a value (RVM's convention of scoring
        the first frame 0 is not used).

    Raises
    ------
    InputError
        One line naming the problem: a folder missing or without images, the
        name sets of pred and gt differ, a pred/gt/trimap size differs for a
        name, a trimap is missing, or a file is unreadable.

    Notes
    -----
    Only the current and the previous frame are held in memory.
    """
    pred_files = _list_images(pred_dir, "pred")
    gt_files = _list_images(gt_dir, "gt")
    _check_same_names(pred_files, gt_files)
    names = sorted(gt_files, key=_natural_key)
    trimap_files = None
    if trimap_dir is not None:
        trimap_files = _list_images(trimap_dir, "trimap")
        missing = [name for name in names if name not in trimap_files]
        if missing:
            raise InputError(
                f"trimap folder {trimap_dir} lacks {len(missing)} of the {len(names)} names "
                f"({_few(missing)})"
            )
    temporal = len(names) >= 2 and all(name.isdigit() for name in names)

    rows: list[dict] = []
    previous = None  # (frame number, pred, gt) of the last frame, for temporal metrics
    for done, name in enumerate(names, start=1):
        pred = _read_alpha(pred_files[name])
        gt = _read_alpha(gt_files[name])
        if pred.shape != gt.shape:
            raise InputError(
                f"size mismatch for '{name}': pred {pred_files[name].name} is {_size(pred)}, "
                f"gt {gt_files[name].name} is {_size(gt)} (rows x columns)"
            )
        row: dict = {"name": name, **image_metrics(pred, gt)}
        if _is_mask(gt):
            row.update(j_and_f(pred, gt))
        if trimap_files is not None:
            trimap = _read_trimap(trimap_files[name])
            if trimap.shape != gt.shape:
                raise InputError(
                    f"size mismatch for '{name}': trimap {trimap_files[name].name} is "
                    f"{_size(trimap)}, gt {gt_files[name].name} is {_size(gt)} (rows x columns)"
                )
            unknown = image_metrics(pred, gt, trimap_region(trimap))
            row.update({f"{key}_unknown": value for key, value in unknown.items()})
        if temporal:
            number = int(name)
            if previous is not None and number == previous[0] + 1 and previous[1].shape == pred.shape:
                row["dtSSD"] = dtssd(pred, previous[1], gt, previous[2])
                rows[-1]["MESSDdt"] = messddt(previous[1], previous[2], pred, gt)
            previous = (number, pred, gt)
        rows.append(row)
        if on_progress is not None:
            on_progress(done, len(names))

    summary = {}
    for key in _COLUMN_ORDER:
        values = [row[key] for row in rows if key in row]
        if values:
            summary[key] = float(np.mean(values))
    return EvalReport(
        rows=rows,
        summary=summary,
        scales={**METRIC_SCALES, **_MASK_SCALES},
        pred_dir=str(pred_dir),
        gt_dir=str(gt_dir),
        trimap_dir=None if trimap_dir is None else str(trimap_dir),
    )
