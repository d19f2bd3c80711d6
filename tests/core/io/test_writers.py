"""Tests for napari_iconmat.core.io.writers: PNG/RGBA/TIFF outputs, atomicity, errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tifffile

from napari_iconmat.core.errors import InputError
from napari_iconmat.core.io import (
    FORMAT_HELP,
    FORMATS,
    OutputWriter,
    alpha_to_uint8,
    alpha_to_uint16,
    atomic_write_png,
    read_image,
)


def _alpha(seed: int, shape=(6, 7)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape)


def _leftovers(folder):
    """Temporary or hidden files anywhere under ``folder``."""
    return [p for p in folder.rglob("*") if p.name.startswith(".") or ".tmp" in p.suffixes]


PARTS = ".iconmat/parts"


def test_format_help_covers_formats():
    assert set(FORMAT_HELP) == set(FORMATS)
    assert set(FORMATS) == {"png", "png16", "rgba", "tiff", "tiff16", "zarr", "prores", "webm", "matte"}


def test_quantisation_clips_and_rounds():
    alpha = np.array([[-0.2, 0.0, 0.5, 1 / 255, 1.0, 1.7]])
    np.testing.assert_array_equal(alpha_to_uint8(alpha), [[0, 0, 128, 1, 255, 255]])
    np.testing.assert_array_equal(alpha_to_uint16(alpha), [[0, 0, 32768, 257, 65535, 65535]])


@pytest.mark.parametrize("formats, dtype, scale", [(("png",), np.uint8, 255), (("png16",), np.uint16, 65535)])
def test_alpha_png_round_trip(tmp_path, formats, dtype, scale):
    alpha = _alpha(0)
    with OutputWriter(tmp_path / "out", formats) as writer:
        paths = writer.write(3, alpha)
    assert paths == [tmp_path / "out" / "alpha" / "00003.png"]
    stored = read_image(paths[0])
    assert stored.dtype == dtype and stored.shape == alpha.shape
    np.testing.assert_array_equal(stored, np.rint(alpha * scale).astype(dtype))
    assert _leftovers(tmp_path) == []


def test_rgba_has_foreground_and_alpha(tmp_path):
    alpha = _alpha(1)
    foreground = np.random.default_rng(2).random((6, 7, 3))
    writer = OutputWriter(tmp_path, ("rgba",))
    assert writer.needs_foreground
    with pytest.raises(InputError, match="foreground"):
        writer.write(0, alpha)
    paths = writer.write(0, alpha, foreground=foreground)
    assert [p.parent.name for p in paths] == ["alpha", "rgba"]
    assert writer.close() == {"alpha": tmp_path / "alpha", "rgba": tmp_path / "rgba"}
    rgba = cv2.imread(str(tmp_path / "rgba" / "00000.png"), cv2.IMREAD_UNCHANGED)
    assert rgba.shape == (6, 7, 4) and rgba.dtype == np.uint8
    rgba = read_image(tmp_path / "rgba" / "00000.png")  # RGB(A) order
    np.testing.assert_array_equal(rgba[..., 3], alpha_to_uint8(alpha))
    np.testing.assert_array_equal(rgba[..., :3], alpha_to_uint8(foreground))


@pytest.mark.parametrize("count", [3, 4])  # 3 and 4 frames must not be taken for RGB(A) channels
def test_tiff_assembled_in_index_order_from_out_of_order_writes(tmp_path, count):
    alphas = {i: _alpha(10 + i).astype(np.float32) for i in range(count)}
    writer = OutputWriter(tmp_path, ["png", "tiff"])
    for i in [2, 0, *range(count - 1, 2, -1), 1]:
        writer.write(i, alphas[i])
    assert (tmp_path / PARTS / "alpha").is_dir()
    assert writer.written == list(range(count))
    outputs = writer.close()
    assert outputs == {"alpha": tmp_path / "alpha", "tiff": tmp_path / "alpha.tif"}
    stack = tifffile.imread(tmp_path / "alpha.tif")
    assert stack.dtype == np.float32 and stack.shape == (count, 6, 7)
    np.testing.assert_array_equal(stack, np.stack([alphas[i] for i in range(count)]))
    assert not (tmp_path / PARTS).exists()
    assert _leftovers(tmp_path) == []
    assert sorted(p.name for p in (tmp_path / "alpha").iterdir()) == [f"{i:05d}.png" for i in range(count)]


def test_tiff_with_frames_of_different_sizes(tmp_path):
    from napari_iconmat.core.io import open_frames

    small, large = _alpha(5, (4, 5)), _alpha(6, (8, 9))
    with OutputWriter(tmp_path, ("tiff",)) as writer:
        writer.write(7, large)
        writer.write(2, small)
    with tifffile.TiffFile(tmp_path / "alpha.tif") as tif:
        pages = [page.asarray() for page in tif.pages]
    assert [p.shape for p in pages] == [(4, 5), (8, 9)]
    np.testing.assert_array_equal(pages[1], large.astype(np.float32))
    with open_frames(tmp_path / "alpha.tif") as frames:  # the reader sees both pages
        assert len(frames) == 2 and not frames.ordered
        np.testing.assert_array_equal(frames[0], small.astype(np.float32))


def test_failed_run_leaves_no_tiff(tmp_path):
    with pytest.raises(RuntimeError), OutputWriter(tmp_path, ("tiff",)) as writer:
        writer.write(0, _alpha(0))
        raise RuntimeError("engine crashed")
    assert not (tmp_path / "alpha.tif").exists()
    assert not (tmp_path / PARTS).exists()
    assert (tmp_path / "alpha" / "00000.png").exists()


def test_stale_parts_are_not_assembled(tmp_path):
    (tmp_path / PARTS / "alpha").mkdir(parents=True)
    np.save(tmp_path / PARTS / "alpha" / "00005.npy", np.zeros((6, 7), np.float32))
    with OutputWriter(tmp_path, ("tiff",)) as writer:
        writer.write(1, _alpha(1))
    assert tifffile.imread(tmp_path / "alpha.tif").shape == (1, 6, 7)


def test_writer_validation(tmp_path):
    with pytest.raises(InputError, match="'jpeg'.*png, png16, rgba, tiff, tiff16, zarr, prores, webm, matte"):
        OutputWriter(tmp_path, ("png", "jpeg"))
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    with pytest.raises(InputError, match="output folder is a file: .*taken"):
        OutputWriter(a_file)

    writer = OutputWriter(tmp_path / "lazy")
    assert not (tmp_path / "lazy").exists()  # created at the first write
    with pytest.raises(InputError, match=r"2-D.*\(6, 7, 1\)"):
        writer.write(0, np.zeros((6, 7, 1)))
    with pytest.raises(InputError, match="dtype uint8"):
        writer.write(0, np.zeros((6, 7), np.uint8))
    bad = _alpha(0)
    bad[1, 1] = np.nan
    with pytest.raises(InputError, match="frame 4 .*NaN"):
        writer.write(4, bad)
    with pytest.raises(InputError, match="-1"):
        writer.write(-1, _alpha(0))
    assert writer.close() == {}

    writer = OutputWriter(tmp_path / "keep", overwrite=False)
    writer.write(0, _alpha(0))
    with pytest.raises(InputError, match="exists: .*00000.png"):
        writer.write(0, _alpha(1))


def test_atomic_write_png(tmp_path):
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[..., 0] = 250
    path = atomic_write_png(tmp_path / "rgb.png", rgb)
    assert cv2.imread(str(path))[0, 0].tolist() == [0, 0, 250]  # stored as a true red
    atomic_write_png(path, rgb[..., 0])  # replaces the file in place
    assert read_image(path).shape == (3, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rgb.png"]

    with pytest.raises(InputError, match="float64"):
        atomic_write_png(tmp_path / "f.png", np.zeros((3, 4)))
    with pytest.raises(InputError, match=r"cannot write .*missing.*x.png"):
        atomic_write_png(tmp_path / "missing" / "x.png", rgb)
    assert _leftovers(tmp_path) == []


def test_atomic_write_png_failure_leaves_nothing(tmp_path, monkeypatch):
    import os

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(InputError, match=r"a\.png.*No space left"):
        atomic_write_png(tmp_path / "a.png", np.zeros((2, 2), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_atomic_writes_follow_links_and_write_special_files_in_place(tmp_path):
    import os

    from napari_iconmat.core.io.writers import atomic_write_bytes

    target = tmp_path / "target.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    os.symlink(target, link)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and target.read_text() == "new"
    if os.path.exists("/dev/null"):  # a character device is written, never replaced by a file
        atomic_write_bytes("/dev/null", b"abc")
        assert not os.path.isfile("/dev/null")
    if os.path.exists("/dev/full"):
        with pytest.raises(InputError, match="cannot write /dev/full"):
            atomic_write_bytes("/dev/full", b"abc")
        assert not os.path.isfile("/dev/full")
