"""The benchmark runner: layouts, rows, baselines, report outputs, errors."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from napari_iconmat.core.evaluation.bench import BenchReport, check_targets, davis_sequences, detect_layout, run_bench
from napari_iconmat.core.errors import InputError
from napari_iconmat.core.evaluation.evaluate import read_alpha_file
from napari_iconmat.core.evaluation.metrics import METRIC_SCALES
from napari_iconmat.core.evaluation.synth import write_synth

SIZE = (96, 64)  # (W, H)
BASE_ROWS = {"classical", "classical-coarse", "copy-reference"}


def _write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image), path


def _make_davis(root, synth_dir, sequences=("seq-a", "seq-b")):
    """A DAVIS-layout root: synth frames as JPEG, masks = GT alpha > 0.5 as 0/255 PNG."""
    frames = sorted((synth_dir / "frames").glob("*.png"))
    for seq in sequences:
        for path in frames:
            image = cv2.imread(str(path))
            alpha = read_alpha_file(synth_dir / "alpha" / path.name)
            _write(root / seq / "frames" / f"{path.stem}.jpg", image)
            _write(root / seq / "masks" / path.name, np.where(alpha > 0.5, 255, 0).astype(np.uint8))
    return root


def _make_icm(root, synth_dir):
    """A fake ICM-57 folder: 6 images in 2 groups of 3, with 8-bit alpha and 0/128/255 trimaps."""
    groups = {}
    for i, path in enumerate(sorted((synth_dir / "frames").glob("*.png"))):
        name = f"img{i}"
        alpha = read_alpha_file(synth_dir / "alpha" / path.name)
        _write(root / "image" / f"{name}.jpg", cv2.imread(str(path)))
        _write(root / "alpha" / f"{name}.png", np.round(alpha * 255).astype(np.uint8))
        trimap = np.where(alpha > 0.98, 255, 0).astype(np.uint8)
        trimap[(alpha > 0.02) & (alpha <= 0.98)] = 128
        _write(root / "trimap" / f"{name}.png", trimap)
        groups[f"{name}.jpg"] = {"class": "creature", "sub_class": "a" if i < 3 else "b", "HalfOrFull": "full"}
    (root / "ICM57.json").write_text(json.dumps(groups))
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    video = write_synth("video", tmp / "synth-video", frames=4, size=SIZE)
    collection = write_synth("collection", tmp / "synth-collection", frames=4, size=SIZE)
    davis = _make_davis(tmp / "davis", video)
    icm_source = write_synth("collection", tmp / "icm-source", frames=6, size=SIZE, seed=3)
    icm = _make_icm(tmp / "icm57", icm_source)
    return {"video": video, "collection": collection, "davis": davis, "icm": icm}


@pytest.fixture(scope="module")
def report(folders):
    calls = []
    order = [folders[k] for k in ("video", "collection", "davis", "icm")]
    result = run_bench(order, isolate=False, on_progress=lambda done, total: calls.append((done, total)))
    result.progress_calls = calls
    return result


def _rows(report, folder, sequence=""):
    return {r["method"]: r for r in report.rows if r["folder"] == folder and r["sequence"] == sequence}


def test_layouts_are_detected(folders):
    assert detect_layout(folders["video"]) == "synth"
    assert detect_layout(folders["davis"]) == "davis"
    assert detect_layout(folders["icm"]) == "icm57"
    assert [p.name for p in davis_sequences(folders["davis"])] == ["seq-a", "seq-b"]
    assert davis_sequences(folders["davis"] / "seq-a") == [folders["davis"] / "seq-a"]


@pytest.mark.parametrize("name", ["synth-video", "synth-collection", "icm57"])
def test_soft_folders_have_every_row_with_finite_metrics(report, name):
    rows = _rows(report, name)
    assert set(rows) == BASE_ROWS | {"gt-trimap-solver"}
    expected = 3 if name.startswith("synth") else 6  # every frame but the reference; every ICM target
    for row in rows.values():
        assert row["frames"] == expected
        for key in ("SAD", "MSE", "Grad", "Conn", "IoU"):
            assert math.isfinite(row[key]), (row["method"], key)
        assert len(row["per_frame"]["error"]) == expected
        assert row["per_frame"]["error_name"] == "SAD"
        assert row["peak_rss_mib"] > 0
    assert rows["classical"]["fps"] > 0 and rows["gt-trimap-solver"]["fps"] > 0
    assert rows["copy-reference"]["fps"] is None
    # the ground-truth trimap solver is an upper bound: it beats copying the reference mask
    assert rows["gt-trimap-solver"]["SAD"] < rows["copy-reference"]["SAD"]


def test_reference_frame_is_not_scored(report):
    for name in ("synth-video", "synth-collection"):
        for row in _rows(report, name).values():
            assert row["per_frame"]["index"] == [1, 2, 3]


def test_dtssd_only_for_synthetic_video(report):
    video, collection = _rows(report, "synth-video"), _rows(report, "synth-collection")
    assert all(math.isfinite(r["dtSSD"]) for r in video.values())
    assert all(r["dtSSD"] is None for r in collection.values())
    assert all(r["dtSSD"] is None for r in report.rows if r["layout"] in ("davis", "icm57"))


def test_icm_rows_score_the_unknown_region(report):
    rows = _rows(report, "icm57")
    for row in rows.values():
        assert row["per_frame"]["index"] == list(range(6))
        assert row["per_frame"]["name"] == [f"img{i}" for i in range(6)]
        assert math.isfinite(row["SAD_unknown"]) and row["SAD_unknown"] <= row["SAD"] + 1e-9
    assert _rows(report, "synth-video")["classical"]["SAD_unknown"] is None


def test_davis_rows_are_per_sequence_iou(report):
    for seq in ("seq-a", "seq-b"):
        rows = _rows(report, "davis", seq)
        assert set(rows) == BASE_ROWS  # no soft ground truth: no gt-trimap-solver
        for row in rows.values():
            assert 0.0 <= row["IoU"] <= 1.0 and row["SAD"] is None
            assert row["per_frame"]["error_name"] == "1-IoU"
            assert row["frames"] == 3
    means = {m["method"]: m for m in report.davis_means()}
    assert set(means) == BASE_ROWS and means["classical"]["sequences"] == 2


def test_progress_counts_every_scored_frame_of_every_job(report):
    calls = report.progress_calls
    total = (3 + 3 + 2 * 3 + 6) * 2  # scored frames x (one engine + baselines)
    assert calls[-1] == (total, total)
    assert [d for d, _ in calls] == list(range(1, total + 1))


def test_table_json_and_targets(report):
    table = report.format_table()
    header, scales = table.splitlines()[:2]
    for key in ("SAD", "MSE", "Grad", "Conn", "dtSSD"):
        assert key in header.split() and METRIC_SCALES[key] in scales
    assert "copy-reference" in table and "mean over 2 sequences" in table
    assert len(table.splitlines()) >= 2 + len(report.rows)
    data = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert len(data["rows"]) == len(report.rows)
    assert data["scales"]["SAD"] == METRIC_SCALES["SAD"]
    targets = check_targets(report)
    assert targets and all(line.startswith(("PASS ", "MISS ")) for line in targets)
    assert any("davis" in line for line in targets)


def test_plot_contact_sheet_and_json_files(report, tmp_path):
    for path in (report.plot(tmp_path / "drift.png"), report.contact_sheet(tmp_path / "worst.png", worst=4)):
        image = cv2.imread(str(path))
        assert image is not None and image.shape[0] > 50 and image.shape[1] > 50
    saved = report.save_json(tmp_path / "bench.json")
    assert json.loads(saved.read_text())["engines"] == ["classical"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_isolated_run_reports_its_own_process(folders, tmp_path):
    ballast = np.ones(2**26)  # 512 MiB resident here; a child's peak must not include it
    report = run_bench(folders["video"], max_frames=1, isolate=True, out_dir=tmp_path)
    del ballast
    rows = _rows(report, "synth-video")
    assert set(rows) == BASE_ROWS | {"gt-trimap-solver"}
    assert all(r["frames"] == 1 and 0 < r["peak_rss_mib"] < 500 for r in rows.values())
    assert {p.name for p in tmp_path.iterdir()} == {"bench.json", "drift.png", "worst.png"}


def test_unrecognised_folder_raises_naming_it(tmp_path):
    odd = tmp_path / "not-a-benchmark"
    (odd / "stuff").mkdir(parents=True)
    with pytest.raises(InputError, match="not-a-benchmark"):
        run_bench([odd], isolate=False)
    with pytest.raises(InputError, match="does-not-exist"):
        run_bench([tmp_path / "does-not-exist"], isolate=False)


def test_unknown_engine_raises_before_work(folders):
    with pytest.raises(InputError, match="no-such-engine"):
        run_bench(folders["video"], engines=["no-such-engine"], isolate=False)


def test_report_without_samples_still_draws(tmp_path):
    empty = BenchReport(rows=[])
    assert cv2.imread(str(empty.contact_sheet(tmp_path / "sheet.png"))) is not None


def test_error_in_isolated_worker_reaches_the_caller(folders, tmp_path):
    import shutil

    broken = shutil.copytree(folders["video"], tmp_path / "broken")
    (broken / "alpha" / "00002.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="00002"):
        run_bench(broken, max_frames=2, isolate=True)


def test_icm_layout_warns_about_what_it_leaves_out_and_refuses_deep_json(folders, tmp_path):
    import shutil

    from napari_iconmat.core.evaluation.bench.layouts import _icm_cases

    icm = tmp_path / "icm"
    shutil.copytree(folders["icm"], icm)
    (icm / "alpha" / "img1.png").unlink()
    groups = json.loads((icm / "ICM57.json").read_text())
    groups["img5.jpg"]["sub_class"] = "alone"
    (icm / "ICM57.json").write_text(json.dumps(groups))
    with pytest.warns(UserWarning) as caught:
        cases = _icm_cases(icm, "icm", None)
    messages = [str(w.message) for w in caught]
    assert any("1 image(s) of ICM57.json lack an image/ or alpha/ file" in m and "img1" in m for m in messages)
    assert any("alone in their group" in m and "img5" in m for m in messages)
    assert {c.names[0] for c in cases} == {"img0", "img2", "img3", "img4"}
    (icm / "ICM57.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(InputError, match="must map image names"):
        _icm_cases(icm, "icm", None)


def test_an_option_an_engine_lacks_fails_before_any_run(folders):
    with pytest.raises(InputError, match="engine 'classical' has no option 'ensemble_size'"):
        run_bench([folders["video"]], engines=["classical"], engine_params={"classical": {"ensemble_size": 1}}, isolate=False)


def test_davis_rows_report_j_f_and_jf_worst_first_beside_copy_reference(report):
    for seq in ("seq-a", "seq-b"):
        for row in _rows(report, "davis", seq).values():
            assert 0.0 <= row["F"] <= 1.0
            assert row["J&F"] == pytest.approx((row["IoU"] + row["F"]) / 2)
    entries = report.davis_sequences("classical")
    assert [e["sequence"] for e in entries] and {e["sequence"] for e in entries} == {"seq-a", "seq-b"}
    assert [e["J&F"] for e in entries] == sorted(e["J&F"] for e in entries)
    assert all(e["copy_J"] is not None and e["copy_J&F"] is not None for e in entries)
    means = {m["method"]: m for m in report.davis_means()}
    assert means["classical"]["J&F"] == pytest.approx(np.mean([e["J&F"] for e in entries]))
    table = report.format_table()
    assert "classical per sequence, worst J&F first" in table and "J&F" in table
    data = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert [e["sequence"] for e in data["davis_sequences"]["classical"]] == [e["sequence"] for e in entries]
