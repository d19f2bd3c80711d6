"""Folder evaluation: file reading, pairing by name, errors, report formatting."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import tifffile

from napari_iconmat.core.errors import InputError
from napari_iconmat.core.evaluation.evaluate import EvalReport, evaluate_folders, read_alpha_file


def _write(path, array):
    assert cv2.imwrite(str(path), array), path
    return path


def _folders(tmp_path, names=("00001", "00002", "00003")):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    return pred, gt, names


# ---- read_alpha_file -------------------------------------------------------------------


def test_read_8_and_16_bit_png(tmp_path):
    alpha8 = np.array([[0, 128, 255]], np.uint8)
    alpha16 = np.array([[0, 32768, 65535]], np.uint16)
    a8 = read_alpha_file(_write(tmp_path / "a8.png", alpha8))
    a16 = read_alpha_file(_write(tmp_path / "a16.png", alpha16))
    assert a8.dtype == np.float32 and a8.shape == (1, 3)
    assert a8 == pytest.approx(np.array([[0, 128 / 255, 1]]), abs=1e-7)
    assert a16 == pytest.approx(np.array([[0, 32768 / 65535, 1]]), abs=1e-7)


def test_read_rgba_png_takes_the_alpha_channel(tmp_path):
    bgra = np.zeros((2, 3, 4), np.uint8)
    bgra[..., :3] = 200  # colour is ignored
    bgra[..., 3] = [[0, 51, 102], [153, 204, 255]]
    alpha = read_alpha_file(_write(tmp_path / "rgba.png", bgra))
    assert alpha == pytest.approx(np.array([[0, 0.2, 0.4], [0.6, 0.8, 1.0]]), abs=1e-7)


def test_read_grey_saved_as_rgb_and_reject_colour(tmp_path):
    grey = np.dstack([np.array([[0, 255]], np.uint8)] * 3)
    assert read_alpha_file(_write(tmp_path / "grey.png", grey)) == pytest.approx(np.array([[0.0, 1.0]]))
    colour = np.zeros((2, 2, 3), np.uint8)
    colour[..., 2] = 255
    path = _write(tmp_path / "red.png", colour)
    with pytest.raises(InputError, match="red.png.*colour"):
        read_alpha_file(path)


def test_read_float_tiff(tmp_path):
    alpha = np.array([[0.0, 0.25], [0.5, 1.0]], np.float32)
    tifffile.imwrite(tmp_path / "a.tif", alpha)
    assert read_alpha_file(tmp_path / "a.tif") == pytest.approx(alpha)
    tifffile.imwrite(tmp_path / "bad.tiff", alpha * 3)
    with pytest.raises(InputError, match=r"bad.tiff.*\[0, 1\]"):
        read_alpha_file(tmp_path / "bad.tiff")


def test_read_unreadable_file_names_it(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(InputError, match="broken.png"):
        read_alpha_file(tmp_path / "broken.png")
    with pytest.raises(InputError, match="missing.png"):
        read_alpha_file(tmp_path / "missing.png")


# ---- evaluate_folders ------------------------------------------------------------------


def test_dim_32x32_case_through_files(tmp_path):
    # metrics-and-icmp.md §1.5: pred 0, gt 255, trimap 128 on the top-left 16x16 block.
    pred, gt, _ = _folders(tmp_path)
    trimaps = tmp_path / "trimap"
    trimaps.mkdir()
    trimap = np.zeros((32, 32), np.uint8)
    trimap[:16, :16] = 128
    trimap[16:, 16:] = 255
    _write(pred / "img.png", np.zeros((32, 32), np.uint8))
    # gt as a 16-bit TIFF, another extension than pred's: files are paired by stem.
    tifffile.imwrite(gt / "img.tif", np.full((32, 32), 65535, np.uint16))
    _write(trimaps / "img.png", trimap)
    report = evaluate_folders(pred, gt, trimaps)
    (row,) = report.rows
    assert row["name"] == "img"
    # Whole image: 1024 px each off by 1 -> SAD = Conn = 1.024; unknown: 256 px -> 0.256.
    expected = {"SAD": 1.024, "MSE": 1.0, "Grad": 0.0, "Conn": 1.024,
                "SAD_unknown": 0.256, "MSE_unknown": 1.0, "Grad_unknown": 0.0, "Conn_unknown": 0.256}
    assert {k: row[k] for k in expected} == pytest.approx(expected, abs=1e-12)
    assert "dtSSD" not in row and "MESSDdt" not in row  # one frame, no sequence
    # the gt is binary, so J, F, J&F too: no overlap (J 0); neither mask has a boundary (F 1, as DAVIS scores it)
    expected.update({"J": 0.0, "F": 1.0, "J&F": 0.5})
    assert report.summary == pytest.approx(expected, abs=1e-12)


def test_sequence_gets_temporal_metrics_in_natural_order(tmp_path):
    pred, gt, _ = _folders(tmp_path)
    # Names 1, 2, 10 (natural order; "10" < "2" as strings). Only 1 -> 2 is a
    # consecutive pair, so dtSSD on frame 2 and MESSDdt on frame 1.
    zeros = np.zeros((4, 4), np.uint8)
    for name in ("1", "2", "10"):
        _write(gt / f"{name}.png", zeros)
    _write(pred / "1.png", zeros)
    flicker = zeros.copy()
    flicker[0, 0] = 255
    _write(pred / "2.png", flicker)  # a 1-pixel flash at frame 2
    _write(pred / "10.png", zeros)
    report = evaluate_folders(pred, gt)
    assert [row["name"] for row in report.rows] == ["1", "2", "10"]
    first, second, third = report.rows
    # dtSSD(2): change 1 at 1 of 16 pixels -> sqrt(1/16) * 100 = 25.
    assert second["dtSSD"] == pytest.approx(25.0)
    # MESSDdt(1): GT static and flat -> flow 0; |e_1 - e_2| = 1 at one pixel -> 1/16 * 1000.
    assert first["MESSDdt"] == pytest.approx(1000 / 16)
    assert "dtSSD" not in first and "MESSDdt" not in second
    assert "dtSSD" not in third and "MESSDdt" not in third
    assert report.summary["dtSSD"] == pytest.approx(25.0)
    # SAD of frame 2: one pixel off by 1 -> 0.001; mean over 3 frames.
    assert report.summary["SAD"] == pytest.approx(0.001 / 3)


def test_identical_folders_score_zero_and_format(tmp_path):
    pred, gt, names = _folders(tmp_path)
    rng = np.random.default_rng(0)
    for name in names:
        alpha = (rng.random((8, 10)) * 65535).astype(np.uint16)
        _write(pred / f"{name}.png", alpha)
        _write(gt / f"{name}.png", alpha)
    (pred / "notes.txt").write_text("not an image")  # ignored
    report = evaluate_folders(pred, gt)
    assert isinstance(report, EvalReport)
    assert len(report.rows) == 3
    for key in ("SAD", "MSE", "Grad", "Conn", "dtSSD", "MESSDdt"):
        assert report.summary[key] == 0.0
    assert report.columns == ["SAD", "MSE", "Grad", "Conn", "dtSSD", "MESSDdt"]
    table = report.format_table()
    header, mean_line = table.splitlines()
    assert "SAD[sum/1000]" in header and "MSE[mean]" in header and "dtSSD[sqrt(mean)x100]" in header
    assert mean_line.split()[0] == "mean"
    lines = report.format_table(per_frame=True).splitlines()
    assert len(lines) == 2 + 3 and lines[2].startswith("00001")
    assert lines[-1].split()[-1] == "-"  # the last frame has no MESSDdt
    assert len({len(line) for line in lines[:2]}) == 1  # fixed width
    data = json.loads(json.dumps(report.to_json()))
    assert data["n_frames"] == 3 and data["scales"]["SAD"] == "sum/1000"
    assert data["frames"][1]["name"] == "00002"


def test_name_mismatch_is_reported(tmp_path):
    pred, gt, names = _folders(tmp_path)
    for name in names:
        _write(gt / f"{name}.png", np.zeros((4, 4), np.uint8))
    _write(pred / "00001.png", np.zeros((4, 4), np.uint8))
    _write(pred / "extra.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match=r"different names: 2 only in gt \(00002, 00003\); "
                                          r"1 only in pred \(extra\); pred has 2 files, gt has 3"):
        evaluate_folders(pred, gt)


def test_size_mismatch_is_reported(tmp_path):
    pred, gt, _ = _folders(tmp_path)
    _write(pred / "00001.png", np.zeros((4, 4), np.uint8))
    _write(gt / "00001.png", np.zeros((4, 4), np.uint8))
    _write(pred / "00002.png", np.zeros((4, 5), np.uint8))
    _write(gt / "00002.png", np.zeros((6, 5), np.uint8))
    with pytest.raises(InputError, match=r"size mismatch for '00002': pred 00002.png is 4x5, gt 00002.png is 6x5"):
        evaluate_folders(pred, gt)


def test_missing_trimap_and_folder_errors(tmp_path):
    pred, gt, names = _folders(tmp_path)
    for name in names:
        _write(pred / f"{name}.png", np.zeros((4, 4), np.uint8))
        _write(gt / f"{name}.png", np.zeros((4, 4), np.uint8))
    trimaps = tmp_path / "trimap"
    trimaps.mkdir()
    _write(trimaps / "00001.png", np.full((4, 4), 128, np.uint8))
    with pytest.raises(InputError, match=r"trimap folder .* lacks 2 of the 3 names \(00002, 00003\)"):
        evaluate_folders(pred, gt, trimaps)
    with pytest.raises(InputError, match="pred folder .*nowhere.* does not exist"):
        evaluate_folders(tmp_path / "nowhere", gt)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="gt folder .*empty.* holds no image files"):
        evaluate_folders(pred, empty)


def test_duplicate_stems_are_rejected(tmp_path):
    pred, gt, _ = _folders(tmp_path)
    _write(pred / "a.png", np.zeros((4, 4), np.uint8))
    _write(pred / "a.bmp", np.zeros((4, 4), np.uint8))
    _write(gt / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match="two files named 'a'"):
        evaluate_folders(pred, gt)


def test_non_integer_names_get_no_temporal_metrics(tmp_path):
    pred, gt, _ = _folders(tmp_path)
    for name in ("cat", "dog"):
        _write(pred / f"{name}.png", np.zeros((4, 4), np.uint8))
        _write(gt / f"{name}.png", np.full((4, 4), 255, np.uint8))
    report = evaluate_folders(pred, gt)
    assert report.columns == ["SAD", "MSE", "Grad", "Conn", "J", "F", "J&F"]  # binary gt: J, F too; no dtSSD
    assert report.summary["SAD"] == pytest.approx(0.016)  # 16 px off by 1, / 1000
    assert not math.isnan(report.summary["Conn"])


def test_binary_ground_truth_is_also_scored_j_f_and_jf(tmp_path):
    import cv2

    from napari_iconmat.core.evaluation.evaluate import evaluate_folders
    from napari_iconmat.core.evaluation.metrics import j_and_f

    (tmp_path / "pred").mkdir(), (tmp_path / "gt").mkdir(), (tmp_path / "soft").mkdir()
    gt = np.zeros((50, 60), np.uint8)
    gt[10:40, 15:45] = 255
    pred = np.roll(gt, 4, axis=1)
    cv2.imwrite(str(tmp_path / "pred" / "00000.png"), pred)
    cv2.imwrite(str(tmp_path / "gt" / "00000.png"), gt)
    cv2.imwrite(str(tmp_path / "soft" / "00000.png"), (gt // 2))
    report = evaluate_folders(tmp_path / "pred", tmp_path / "gt")
    expected = j_and_f(pred / 255.0, gt > 0)
    for key in ("J", "F", "J&F"):
        assert report.rows[0][key] == pytest.approx(expected[key]) and key in report.columns
    assert "J&F[mean]" in report.format_table()
    soft = evaluate_folders(tmp_path / "pred", tmp_path / "soft")  # soft ground truth: matting metrics only
    assert "J" not in soft.rows[0] and "J&F" not in soft.columns
