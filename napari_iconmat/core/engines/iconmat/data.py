"""Training pairs for the IconMatting decoder from datasets in the ICM-57 JSON layout.

A data root holds, for every dataset NAME::

    <root>/<NAME>.json                   image name -> {class, sub_class, HalfOrFull, ...}
    <root>/<NAME>/image/<name>.jpg|png
    <root>/<NAME>/alpha/<name>.png
    <root>/<NAME>/trimap/<name>.png      optional (0 / 128 / 255)

(``<root>/<NAME>/<NAME>.json`` or ``<root>/<NAME>/ICM57.json`` works too: the
folder is read by :func:`napari_iconmat.core.evaluation.bench.layouts.read_icm_folder`, the
same reader ``iconmat bench`` uses.) As in the released code (``iconmatting.md``
§4): every listed image is a target; its reference is drawn uniformly from its
group ``'{class}-{sub_class}-{HalfOrFull}'`` (over all datasets), excluding the
target itself only when the group has more than 2 members; both are
centre-cropped to a square and resized to the training resolution with a
randomly chosen OpenCV interpolation (nearest, linear, cubic, Lanczos; trimaps
nearest); alphas of datasets whose name contains ``open-images`` are binarised
at 0.5 on load; records with an ``instance_area_ratio`` whose minimum is below
0.3 are subsampled. Everything random is drawn from ``numpy`` generators seeded
by ``(seed, step, slot)``, so a batch depends only on the seed and the step.

No torch here: batches are numpy arrays.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ...errors import InputError

__all__ = ["MattingSample", "InContextPairs", "crop_resize", "trimap_levels", "derive_trimap"]

#: OpenCV interpolations drawn at random for images and alphas (the released RANDOM_INTERP)
INTERPOLATIONS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_LANCZOS4)
_IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg")


@dataclass(frozen=True)
class MattingSample:
    """One training image: where its files are and which group it pairs within."""

    dataset: str
    name: str
    group: str
    image: Path
    alpha: Path
    trimap: Path | None  # None: derived from the alpha at load
    binarise: bool  # an 'open-images' dataset: alpha > 0.5 on load


def trimap_levels(trimap: np.ndarray) -> np.ndarray:
    """A stored trimap as float32 in {0, 0.5, 1}: < 85 background, >= 170 foreground (0..255 scale)."""
    trimap = np.asarray(trimap)
    if trimap.dtype == np.uint16:
        values = trimap.astype(np.float32) / 257.0
    elif np.issubdtype(trimap.dtype, np.floating) and trimap.size and float(trimap.max()) <= 1.0:
        values = trimap.astype(np.float32) * 255.0
    else:
        values = trimap.astype(np.float32)
    out = np.full(values.shape, 0.5, np.float32)
    out[values < 85] = 0.0
    out[values >= 170] = 1.0
    return out


def derive_trimap(alpha: np.ndarray) -> np.ndarray:
    """A trimap for an alpha that has none: unknown where 0.02 < alpha < 0.98 and in a band around the edge.

    The band's half-width follows object size (:func:`~napari_iconmat.core.matting.trimap.band_width`:
    1.2 % of the square root of the object area, 2 to 24 px), so a binary mask
    also gets an unknown edge. Returns (H, W) float32 in {0, 0.5, 1}.
    """
    from ...matting.trimap import band_width, trimap_from_alpha, trimap_from_mask

    mask = alpha > 0.5
    width = band_width(mask)
    trimap = trimap_from_alpha(alpha, width=width)
    band = trimap_from_mask(mask, width=width) == 0.5
    trimap[band] = 0.5
    return trimap


def crop_resize(array: np.ndarray, size: int, interpolation: int) -> np.ndarray:
    """Centre square crop (the longer side cut to the shorter, centred), then resize to ``size`` x ``size``."""
    h, w = array.shape[:2]
    if h > w:
        top = (h - w) // 2
        array = array[top : top + w]
    elif w > h:
        left = (w - h) // 2
        array = array[:, left : left + h]
    return cv2.resize(np.ascontiguousarray(array), (size, size), interpolation=interpolation)


def _rgb_uint8(image: np.ndarray, path: Path) -> np.ndarray:
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    elif image.ndim != 3 or image.shape[2] not in (3, 4):
        raise InputError(f"training image {path} must be grey, RGB or RGBA, got an array of shape {image.shape}")
    image = image[..., :3]
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    if image.dtype == np.uint16:
        return (image.astype(np.float32) / 257.0).round().astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        return (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    raise InputError(f"training image {path} has an unsupported dtype {image.dtype}")


def _find_image(folder: Path, stem: str) -> Path | None:
    for suffix in _IMAGE_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def _dataset_files(root: Path, name: str) -> tuple[Path, Path]:
    """(folder, json) of dataset ``name`` under ``root``."""
    folder = root / name
    if not folder.is_dir():
        raise InputError(f"dataset {name!r}: no folder {folder} (expected {folder}/image, {folder}/alpha)")
    for candidate in (root / f"{name}.json", folder / f"{name}.json", folder / "ICM57.json"):
        if candidate.is_file():
            return folder, candidate
    raise InputError(f"dataset {name!r}: no metadata file {root / (name + '.json')}")


def _keep_small_instance(info: dict, rng: np.random.Generator) -> bool:
    """The released subsampling of records whose smallest instance covers < 30 % of the image."""
    ratios = info.get("instance_area_ratio")
    if ratios is None:
        return True
    try:
        x = float(min(ratios)) if isinstance(ratios, (list, tuple)) else float(ratios)
    except (TypeError, ValueError):
        raise InputError(f"instance_area_ratio must be a number or a list of numbers, got {ratios!r}") from None
    if x >= 0.3:
        return True
    return 100.0 * (0.6 - x) * x / 9.0 > rng.random() ** 0.2


class InContextPairs:
    """Targets and same-group references from datasets in the ICM-57 JSON layout.

    Parameters
    ----------
    root : str or Path
        The data root (see the module docstring).
    datasets : sequence of str
        Dataset names: ``<root>/<NAME>.json`` and ``<root>/<NAME>/``.
    resolution : int
        Side of the square training crops, >= 48.
    seed : int
        Seeds the epoch order, the reference draws, the interpolations and the
        ``instance_area_ratio`` subsampling. Default 0.
    random_interpolation : bool
        Resize images and alphas with a randomly drawn interpolation (the released
        training); False: bilinear. Default True.

    Raises
    ------
    InputError
        A dataset folder or JSON is missing or malformed, a listed image has no
        image or alpha file, or no image is left.

    Warns
    -----
    UserWarning
        When trimaps are derived from the alphas (no ``trimap/`` file).
    """

    def __init__(self, root, datasets, *, resolution: int, seed: int = 0, random_interpolation: bool = True) -> None:
        from ...evaluation.bench.layouts import read_icm_folder

        root = Path(root)
        if not root.is_dir():
            raise InputError(f"data root {root} does not exist or is not a folder")
        datasets = [d for d in datasets if d]
        if not datasets:
            raise InputError("no dataset given: pass --dataset NAME[,NAME] (NAME.json and NAME/ under the data root)")
        if resolution < 48:
            raise InputError(f"training resolution must be at least 48 (the 5-level Laplacian loss), got {resolution}")
        self.root = root
        self.datasets = tuple(datasets)
        self.resolution = int(resolution)
        self.seed = int(seed)
        self.random_interpolation = bool(random_interpolation)
        subsample = np.random.default_rng([self.seed, 2])
        samples: list[MattingSample] = []
        derived: dict[str, int] = defaultdict(int)
        for name in datasets:
            folder, json_path = _dataset_files(root, name)
            binarise = "open-images" in name
            for entry in read_icm_folder(folder, json_path):
                image = entry.image
                if image is None and binarise:  # open-images masks are '<image id>_<instance>'
                    image = _find_image(folder / "image", entry.name.split("_")[0])
                if image is None or entry.alpha is None:
                    what = "image" if image is None else "alpha"
                    raise InputError(f"dataset {name!r}: {json_path.name} lists {entry.name!r} but {folder / what} has no file for it")
                if not _keep_small_instance(entry.info, subsample):
                    continue
                if entry.trimap is None:
                    derived[name] += 1
                samples.append(MattingSample(name, entry.name, entry.group, image, entry.alpha, entry.trimap, binarise))
        if not samples:
            raise InputError(f"datasets {', '.join(datasets)} under {root} list no image")
        self.samples: tuple[MattingSample, ...] = tuple(samples)
        groups: dict[str, list[int]] = defaultdict(list)
        for index, sample in enumerate(self.samples):
            groups[sample.group].append(index)
        self.groups: dict[str, tuple[int, ...]] = {k: tuple(v) for k, v in groups.items()}
        self.derived_trimaps = dict(derived)
        for name, count in derived.items():
            warnings.warn(
                f"dataset {name!r}: {count} image(s) have no trimap/ file; their trimaps are derived from the alpha "
                "(unknown where 0.02 < alpha < 0.98 and in a band of 2-24 px around the edge)",
                stacklevel=2,
            )
        self._order_epoch = -1
        self._order: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def reference_for(self, index: int, rng: np.random.Generator) -> int:
        """A reference for target ``index``: uniform over its group, itself excluded only in groups of > 2."""
        members = self.groups[self.samples[index].group]
        if len(members) > 2:
            members = tuple(m for m in members if m != index)
        return members[int(rng.integers(len(members)))]

    def _interpolation(self, rng: np.random.Generator) -> int:
        if not self.random_interpolation:
            return cv2.INTER_LINEAR
        return INTERPOLATIONS[int(rng.integers(len(INTERPOLATIONS)))]

    def load(self, index: int, rng: np.random.Generator) -> dict:
        """One sample at the training resolution S.

        Returns
        -------
        dict
            ``image`` (3, S, S) float32 in [-1, 1] (``x / 127.5 - 1``), ``alpha``
            (1, S, S) float32 in [0, 1], ``trimap`` (1, S, S) float32 in {0, 0.5, 1},
            ``binary`` (bool: the loaded alpha is all 0 or 1), ``name``.
        """
        from ...evaluation.evaluate import read_alpha_file
        from ...io.readers import read_image

        sample = self.samples[index]
        image = _rgb_uint8(read_image(sample.image), sample.image)
        alpha = read_alpha_file(sample.alpha)
        if alpha.shape != image.shape[:2]:
            raise InputError(f"alpha {sample.alpha} is {alpha.shape[1]}x{alpha.shape[0]}, its image {sample.image} is {image.shape[1]}x{image.shape[0]}")
        if sample.binarise:
            alpha = (alpha >= 0.5).astype(np.float32)
        binary = bool(np.all((alpha == 0) | (alpha == 1)))
        if sample.trimap is not None:
            stored = read_image(sample.trimap)
            stored = stored[..., 0] if stored.ndim == 3 else stored
            if stored.shape != alpha.shape:
                raise InputError(f"trimap {sample.trimap} is {stored.shape[1]}x{stored.shape[0]}, its image is {image.shape[1]}x{image.shape[0]}")
            trimap = trimap_levels(stored)
        else:
            trimap = derive_trimap(alpha)
        size = self.resolution
        # the image and the alpha each draw their own interpolation, as in the released CropResize
        image = crop_resize(image, size, self._interpolation(rng))
        alpha = np.clip(crop_resize(alpha, size, self._interpolation(rng)), 0.0, 1.0)
        trimap = crop_resize(trimap, size, cv2.INTER_NEAREST)
        return {
            "image": (image.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1),
            "alpha": alpha[None].astype(np.float32),
            "trimap": trimap[None].astype(np.float32),
            "binary": binary,
            "name": f"{sample.dataset}/{sample.name}",
        }

    def order(self, epoch: int) -> np.ndarray:
        """The targets of ``epoch`` in visiting order: a permutation seeded by (seed, epoch)."""
        if epoch != self._order_epoch:
            self._order = np.random.default_rng([self.seed, 0, epoch]).permutation(len(self.samples))
            self._order_epoch = epoch
        return self._order

    def batch(self, step: int, batch_size: int, *, references: bool = True) -> dict:
        """Batch ``step``: the next ``batch_size`` targets of the epoch order, each with a reference.

        Parameters
        ----------
        step : int
            0-based optimizer step; the batch depends only on it and the seed.
        batch_size : int
        references : bool
            Also load the references (default True; the trimap variant needs none).

        Returns
        -------
        dict
            ``image``, ``alpha``, ``trimap`` of the targets, ``reference_image``,
            ``reference_alpha`` (the reference's alpha, the guidance), stacked as
            (B, C, S, S) float32; ``binary`` (B,) bool; ``names`` and
            ``reference_names`` (lists of 'dataset/name'). Without ``references``
            the reference entries are absent.
        """
        targets, refs = [], []
        for slot in range(batch_size):
            position = step * batch_size + slot
            index = int(self.order(position // len(self.samples))[position % len(self.samples)])
            rng = np.random.default_rng([self.seed, 1, step, slot])
            reference = self.reference_for(index, rng)  # drawn either way: the same target crops with or without
            targets.append(self.load(index, rng))
            if references:
                refs.append(self.load(reference, rng))
        batch = {
            "image": np.stack([t["image"] for t in targets]),
            "alpha": np.stack([t["alpha"] for t in targets]),
            "trimap": np.stack([t["trimap"] for t in targets]),
            "binary": np.array([t["binary"] for t in targets]),
            "names": [t["name"] for t in targets],
        }
        if references:
            batch["reference_image"] = np.stack([r["image"] for r in refs])
            batch["reference_alpha"] = np.stack([r["alpha"] for r in refs])
            batch["reference_names"] = [r["name"] for r in refs]
        return batch
