"""Benchmark folder layouts (synth, DAVIS, ICM-57): detection, cases, ground-truth reading."""

from __future__ import annotations

import json
import resource
import sys
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ...errors import InputError
from ...io.readers import natural_key
from ..metrics import trimap_region

LAYOUTS = ("synth", "davis", "icm57")
COPY_REFERENCE = "copy-reference"
UPPER_BOUND = "gt-trimap-solver"
DRIFT_FACTOR = 3.0  # a frame whose error exceeds this many times the row's median is flagged

_IMAGE_KEYS = ("SAD", "MSE", "Grad", "Conn")
_COLUMNS = (*_IMAGE_KEYS, *(f"{k}_unknown" for k in _IMAGE_KEYS), "dtSSD", "IoU", "F", "J&F")
_FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
_THUMB_SIDE = 480  # longest side of the frames kept for the contact sheet
_ICM_SEED = 42  # IconMatting's seed_everything(42): picks each target's reference



# ------------------------------------------------------------------ layouts


@dataclass(frozen=True)
class _Case:
    """One matting run to score: a sequence (synth, DAVIS) or one ICM-57 target.

    ``frames`` is what :func:`open_frames` opens (a folder, or one image file);
    ``gt`` and ``trimaps`` hold one path per frame of it. ``reference`` is the
    reference's index in ``frames``, or None when the reference is the separate
    ``reference_image``. ``targets`` are the scored frame indices, ascending.
    """

    folder: str
    sequence: str
    frames: str
    names: tuple[str, ...]
    gt: tuple[str, ...]
    reference_mask: str
    targets: tuple[int, ...]
    ordered: bool
    soft: bool  # soft ground-truth alpha (synth, ICM) or binary masks (DAVIS)
    reference: int | None = None
    reference_image: str | None = None
    first: int = 0  # reported index of frame 0 (an ICM-57 target's position in its folder)
    trimaps: tuple[str | None, ...] | None = None

    @property
    def frame_range(self) -> tuple[int, int] | None:
        if self.reference is None or not self.targets:
            return None
        return min(*self.targets, self.reference), max(*self.targets, self.reference) + 1


def _images_by_stem(folder: Path, suffixes=_FRAME_SUFFIXES) -> dict[str, Path]:
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes]
    return {p.stem: p for p in sorted(files, key=lambda p: natural_key(p.name))}


def _frame_names(frames_dir: Path) -> list[str]:
    from ...io.readers import open_frames

    with open_frames(frames_dir) as source:
        return list(source.frame_names)


def _paired(names: list[str], files: dict[str, Path], what: str, folder: Path) -> tuple[str, ...]:
    missing = [n for n in names if n not in files]
    if missing:
        raise InputError(
            f"{what} folder {folder} lacks {len(missing)} of the {len(names)} frames "
            f"(first: {missing[0]!r}): every frame needs a file of the same name"
        )
    return tuple(str(files[n]) for n in names)


def _limit(indices: list[int], max_frames: int | None) -> tuple[int, ...]:
    return tuple(indices if max_frames is None else indices[:max_frames])


def davis_sequences(root) -> list[Path]:
    """The DAVIS-style sequences under ``root``.

    Parameters
    ----------
    root : str or Path
        A folder holding ``frames/`` and ``masks/`` (one sequence), or a folder
        of such sequence folders.

    Returns
    -------
    list of Path
        Sequence folders in natural name order; empty when ``root`` is neither.
    """
    root = Path(root)

    def is_sequence(path: Path) -> bool:
        return (path / "frames").is_dir() and (path / "masks").is_dir()

    if is_sequence(root):
        return [root]
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and is_sequence(p)), key=lambda p: natural_key(p.name))


def _icm_json(folder: Path) -> Path | None:
    if (folder / "ICM57.json").is_file():
        return folder / "ICM57.json"
    found = sorted(folder.glob("*.json"))
    if not found and folder.with_name(folder.name + ".json").is_file():
        return folder.with_name(folder.name + ".json")  # the released layout: datasets/ICM57.json + datasets/ICM57/
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise InputError(
            f"ICM-57 folder {folder} holds {len(found)} .json files ({', '.join(p.name for p in found[:3])}, ...): "
            "name the grouping file ICM57.json"
        )
    return None


def detect_layout(folder) -> str:
    """Which benchmark layout ``folder`` is: one of :data:`LAYOUTS`.

    Raises
    ------
    InputError
        The folder does not exist or matches no layout.
    """
    path = Path(folder)
    if not path.is_dir():
        raise InputError(f"benchmark folder {folder} does not exist or is not a folder")
    if (path / "reference.json").is_file():
        return "synth"
    if davis_sequences(path):
        return "davis"
    if (path / "image").is_dir() and (path / "alpha").is_dir() and _icm_json(path) is not None:
        return "icm57"
    raise InputError(
        f"cannot tell the layout of benchmark folder {folder}: expected reference.json + frames/ + alpha/ "
        "(synthetic), <seq>/frames/ + <seq>/masks/ (DAVIS) or image/ + alpha/ + ICM57.json (ICM-57)"
    )


def _synth_cases(path: Path, label: str, max_frames: int | None) -> tuple[str, list[_Case]]:
    try:
        meta = json.loads((path / "reference.json").read_text())
        kind, ref, mask = meta["kind"], int(meta["frame"]), meta.get("mask", "reference_mask.png")
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise InputError(f"{path / 'reference.json'} is not a synthetic reference file: {exc!r}") from None
    if kind not in ("video", "collection"):
        raise InputError(f"{path / 'reference.json'}: 'kind' must be 'video' or 'collection', got {kind!r}")
    for part in ("frames", "alpha", mask):
        if not (path / part).exists():
            raise InputError(f"synthetic benchmark folder {path} lacks {part}")
    names = _frame_names(path / "frames")
    if not 0 <= ref < len(names):
        raise InputError(f"{path / 'reference.json'}: reference frame {ref} is out of range (0..{len(names) - 1})")
    gt = _paired(names, _images_by_stem(path / "alpha"), "alpha", path / "alpha")
    targets = _limit([i for i in range(len(names)) if i != ref], max_frames)
    case = _Case(
        folder=label, sequence="", frames=str(path / "frames"), names=tuple(names), gt=gt,
        reference_mask=str(path / mask), targets=targets, ordered=kind == "video", soft=True, reference=ref,
    )  # fmt: skip
    return f"synth-{kind}", [case]


def _davis_cases(path: Path, label: str, max_frames: int | None) -> list[_Case]:
    cases = []
    for seq in davis_sequences(path):
        names = _frame_names(seq / "frames")
        if len(names) < 2:
            raise InputError(f"DAVIS sequence {seq} has {len(names)} frame: at least 2 are needed")
        masks = _paired(names, _images_by_stem(seq / "masks", (".png",)), "masks", seq / "masks")
        cases.append(
            _Case(
                folder=label, sequence=seq.name, frames=str(seq / "frames"), names=tuple(names), gt=masks,
                reference_mask=masks[0], targets=_limit(list(range(1, len(names))), max_frames),
                ordered=True, soft=False, reference=0,
            )  # fmt: skip
        )
    return cases


@dataclass(frozen=True)
class IcmEntry:
    """One image listed in an ICM-57-style JSON, with the files found for it.

    ``group`` is IconMatting's group key ``'{class}-{sub_class}-{HalfOrFull}'``;
    ``image``, ``alpha`` and ``trimap`` are None where the folder has no such file;
    ``info`` is the image's JSON record as read.
    """

    name: str
    group: str
    image: Path | None
    alpha: Path | None
    trimap: Path | None
    info: dict


def read_icm_folder(folder, json_path=None) -> list[IcmEntry]:
    """The images of an ICM-57-layout folder: ``image/``, ``alpha/``, optional ``trimap/``.

    Parameters
    ----------
    folder : str or Path
        Holds ``image/<name>.jpg|png``, ``alpha/<name>.png`` and optionally
        ``trimap/<name>.png``.
    json_path : str or Path, optional
        The metadata file mapping image name (with or without extension) to
        ``{'class', 'sub_class', 'HalfOrFull', ...}``. Default: ``ICM57.json`` or
        the single ``.json`` in ``folder``, else ``<folder>.json`` beside it.

    Returns
    -------
    list of IcmEntry
        In the order of the JSON file, files looked up by name stem.

    Raises
    ------
    InputError
        No JSON file, an unreadable one, or records without the three group fields.
    """
    path = Path(folder)
    json_path = Path(json_path) if json_path is not None else _icm_json(path)
    if json_path is None or not json_path.is_file():
        raise InputError(f"no grouping JSON for ICM-57 folder {path}: expected {path / 'ICM57.json'} or {path}.json")
    if not (path / "image").is_dir() or not (path / "alpha").is_dir():
        raise InputError(f"ICM-57 folder {path} must hold image/ and alpha/ folders")
    try:
        records = json.loads(json_path.read_text())
        images = _images_by_stem(path / "image")
        alphas = _images_by_stem(path / "alpha", (".png", ".jpg", ".jpeg", ".tif", ".tiff"))
        trimaps = _images_by_stem(path / "trimap", (".png",)) if (path / "trimap").is_dir() else {}
        entries = []
        for name, info in records.items():
            stem = Path(name).stem
            group = f"{info['class']}-{info['sub_class']}-{info['HalfOrFull']}"
            entries.append(IcmEntry(stem, group, images.get(stem), alphas.get(stem), trimaps.get(stem), dict(info)))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise InputError(
            f"{json_path} must map image names to {{'class', 'sub_class', 'HalfOrFull'}}: {exc!r}"
        ) from None
    return entries


def _first_names(names: list, shown: int = 5) -> str:
    return ", ".join(names[:shown]) + (" ..." if len(names) > shown else "")


def _icm_cases(path: Path, label: str, max_frames: int | None) -> list[_Case]:
    json_path = _icm_json(path)
    listed = read_icm_folder(path, json_path)
    entries = {e.name: e for e in listed if e.image is not None and e.alpha is not None}
    incomplete = sorted((e.name for e in listed if e.name not in entries), key=natural_key)
    if incomplete and entries:
        warnings.warn(
            f"{len(incomplete)} image(s) of {json_path.name} lack an image/ or alpha/ file in {path} and are "
            f"left out: {_first_names(incomplete)}",
            stacklevel=2,
        )
    keys = {name: e.group for name, e in entries.items()}
    images = {name: e.image for name, e in entries.items()}
    alphas = {name: e.alpha for name, e in entries.items()}
    trimaps = {name: e.trimap for name, e in entries.items() if e.trimap is not None}
    if not keys:
        raise InputError(f"no image of {json_path} has both image/ and alpha/ files in {path}")
    members = defaultdict(list)
    for stem in sorted(keys, key=natural_key):
        members[keys[stem]].append(stem)
    rng = np.random.default_rng(_ICM_SEED)
    pairs = []
    for stem in sorted(keys, key=natural_key):
        others = [s for s in members[keys[stem]] if s != stem]
        if others:  # a group of one has no reference: the target is skipped
            pairs.append((stem, others[int(rng.integers(len(others)))]))
    if not pairs:
        raise InputError(f"every group of {json_path} holds a single image: no target has a reference")
    single = sorted((stem for stem in keys if len(members[keys[stem]]) == 1), key=natural_key)
    if single:
        warnings.warn(
            f"{len(single)} image(s) of {json_path.name} are alone in their group (no reference) and are left out: "
            f"{_first_names(single)}",
            stacklevel=2,
        )
    pairs = pairs if max_frames is None else pairs[:max_frames]
    return [
        _Case(
            folder=label, sequence="", frames=str(images[target]), names=(target,), gt=(str(alphas[target]),),
            reference_mask=str(alphas[ref]), targets=(0,), ordered=False, soft=True,
            reference_image=str(images[ref]), first=position,
            trimaps=(str(trimaps[target]) if target in trimaps else None,),
        )  # fmt: skip
        for position, (target, ref) in enumerate(pairs)
    ]


def _folder_cases(folder, label: str, max_frames: int | None) -> tuple[str, list[_Case]]:
    layout = detect_layout(folder)
    path = Path(folder)
    if layout == "synth":
        return _synth_cases(path, label, max_frames)
    if layout == "davis":
        return layout, _davis_cases(path, label, max_frames)
    return layout, _icm_cases(path, label, max_frames)


# ------------------------------------------------------------------ reading


def _read_gt(case: _Case, index: int, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 alpha (soft ground truth) or bool mask (DAVIS)."""
    path = case.gt[index]
    if case.soft:
        from ..evaluate import read_alpha_file

        gt = read_alpha_file(path)
    else:
        gt = _read_mask(path)
    if gt.shape != tuple(shape):
        raise InputError(f"ground truth {path} is {gt.shape[0]}x{gt.shape[1]}, its frame is {shape[0]}x{shape[1]}")
    return gt


def _read_mask(path) -> np.ndarray:
    """(H, W) bool: any non-zero pixel (grey, RGB or palette masks)."""
    from ...io.readers import read_image

    image = read_image(path)
    if image.ndim == 3:
        image = image[..., 3] if image.shape[2] == 4 and image[..., 3].min() != image[..., 3].max() else image[..., :3].max(axis=2)
    return image > 0


def _reference_mask(case: _Case) -> np.ndarray:
    """(H, W) bool reference mask: a binary mask as is, a soft alpha binarised > 0.5."""
    if case.soft:
        from ..evaluate import read_alpha_file

        return read_alpha_file(case.reference_mask) > 0.5
    return _read_mask(case.reference_mask)


def _read_region(case: _Case, index: int, shape) -> np.ndarray | None:
    if case.trimaps is None or case.trimaps[index] is None:
        return None
    from ...io.readers import read_image

    trimap = read_image(case.trimaps[index])
    trimap = trimap[..., 0] if trimap.ndim == 3 else trimap
    if trimap.shape != tuple(shape):
        raise InputError(f"trimap {case.trimaps[index]} is {trimap.shape[0]}x{trimap.shape[1]}, its image is {shape[0]}x{shape[1]}")
    return trimap_region(trimap)


def _resize_nearest(mask: np.ndarray, shape) -> np.ndarray:
    if mask.shape == tuple(shape):
        return mask
    return cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0


def _peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB (a process-wide high-water mark).

    On Linux ``ru_maxrss`` survives ``exec``: a spawned child would report at
    least its parent's RSS at the fork. ``VmHWM`` of /proc/self/status is the
    peak of the current program only, so it is read where it exists.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux
