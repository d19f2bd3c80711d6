"""The benchmark report: table, JSON, drift plot, worst-frame contact sheet, target check."""

from __future__ import annotations

import io
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ...io.writers import atomic_write_bytes
from ..metrics import METRIC_SCALES
from .layouts import _COLUMNS, COPY_REFERENCE, DRIFT_FACTOR, UPPER_BOUND

# ------------------------------------------------------------------ report


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, np.generic):
        return _json_value(value.item())
    return value


def _fmt(value, width: int) -> str:
    if value is None:
        return f"{'-':>{width}}"
    if isinstance(value, str):
        return f"{value:>{width}}"
    return f"{value:>{width}.4g}"


@dataclass
class BenchReport:
    """What :func:`run_bench` measured.

    Attributes
    ----------
    rows : list of dict
        One per folder x sequence x method; keys in :func:`run_bench`'s Notes.
    folders : list of dict
        ``folder`` (label), ``path``, ``layout``, ``sequences`` (DAVIS), ``targets``.
    engines : list of str
    wall_seconds : float
        Wall time of the whole run.
    samples : list of dict
        The worst frames kept for :meth:`contact_sheet` (not in the JSON).
    """

    rows: list[dict]
    folders: list[dict] = field(default_factory=list)
    engines: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    samples: list[dict] = field(default_factory=list, repr=False)

    def davis_means(self) -> list[dict]:
        """Per DAVIS folder and method: means of the per-sequence J (IoU), F and J&F, and the worst sequence by IoU."""
        out = []
        for info in self.folders:
            if info["layout"] != "davis":
                continue
            by_method = defaultdict(dict)
            for row in self.rows:
                if row["folder"] == info["folder"] and row["IoU"] is not None:
                    by_method[row["method"]][row["sequence"]] = row
            for method, rows in by_method.items():
                ious = {sequence: row["IoU"] for sequence, row in rows.items()}
                worst = min(ious, key=ious.get)
                mean = {"IoU": float(np.mean(list(ious.values())))}
                for key in ("F", "J&F"):
                    values = [row[key] for row in rows.values() if row.get(key) is not None]
                    mean[key] = float(np.mean(values)) if len(values) == len(rows) else None
                out.append(
                    {"folder": info["folder"], "method": method, **mean,
                     "worst_sequence": worst, "worst_IoU": ious[worst], "sequences": len(ious)}  # fmt: skip
                )
        return out

    def davis_sequences(self, engine: str) -> list[dict]:
        """Per DAVIS folder, one entry per sequence, worst J&F (or IoU) first: the engine's J, F, J&F beside copy-reference's."""
        out = []
        for info in self.folders:
            if info["layout"] != "davis":
                continue
            rows = {(r["sequence"], r["method"]): r for r in self.rows if r["folder"] == info["folder"]}
            entries = []
            for (sequence, method), row in rows.items():
                if method != engine or row["IoU"] is None:
                    continue
                copy = rows.get((sequence, COPY_REFERENCE), {})
                entries.append(
                    {"folder": info["folder"], "sequence": sequence, "J": row["IoU"], "F": row.get("F"),
                     "J&F": row.get("J&F"), "copy_J": copy.get("IoU"), "copy_J&F": copy.get("J&F")}  # fmt: skip
                )
            out += sorted(entries, key=lambda e: (e["J&F"] if e["J&F"] is not None else e["J"], e["sequence"]))
        return out

    def to_json(self) -> dict:
        """The report as a JSON-serialisable dict (non-finite numbers become null).

        Returns
        -------
        dict
            ``scales``, ``engines``, ``folders``, ``rows``, ``davis_means``,
            ``targets`` (:func:`check_targets`) and ``wall_seconds``.
        """
        return _json_value(
            {
                "scales": {**METRIC_SCALES, "IoU": "alpha > 0.5 vs gt > 0.5 (DAVIS J)",
                           "F": "DAVIS boundary F-measure of alpha > 0.5", "J&F": "mean of J and F", "peak_rss_mib": "MiB, process high-water mark"},
                "engines": list(self.engines),
                "folders": self.folders,
                "rows": self.rows,
                "davis_means": self.davis_means(),
                "davis_sequences": {engine: self.davis_sequences(engine) for engine in self.engines},
                "targets": check_targets(self),
                "wall_seconds": self.wall_seconds,
            }
        )

    def save_json(self, path) -> Path:
        """Write :meth:`to_json` to ``path`` atomically; returns the path."""
        return atomic_write_bytes(path, (json.dumps(self.to_json(), indent=1) + "\n").encode())

    def format_table(self) -> str:
        """The report as a fixed-width text table, one line per folder x sequence x method.

        The header gives each metric's scale; DAVIS folders end with one mean
        line per method (mean of the sequence IoUs) with copy-reference beside it.
        """
        present = [k for k in _COLUMNS if any(row.get(k) is not None for row in self.rows)]
        names = [*present, "fps", "RSS", "drift"]
        units = [METRIC_SCALES.get(k.split("_")[0], "alpha>0.5") for k in present] + ["frames/s", "MiB", "max/med"]
        widths = [max(len(n), len(u), 8) for n, u in zip(names, units)]
        fw = max([len("folder"), *(len(r["folder"]) for r in self.rows)])
        sw = max([len("sequence"), *(len(r["sequence"]) for r in self.rows)])
        mw = max([len("method"), *(len(r["method"]) for r in self.rows)])
        lead = ("folder", "sequence", "method", "n")
        lines = [
            "  ".join([f"{lead[0]:<{fw}}", f"{lead[1]:<{sw}}", f"{lead[2]:<{mw}}", f"{lead[3]:>4}",
                       *(f"{n:>{w}}" for n, w in zip(names, widths))]),
            "  ".join([f"{'':<{fw}}", f"{'':<{sw}}", f"{'scale:':<{mw}}", f"{'':>4}",
                       *(f"{u:>{w}}" for u, w in zip(units, widths))]),
        ]  # fmt: skip
        for row in self.rows:
            drift = "-" if row["drift_ratio"] is None else f"{row['drift_ratio']:.1f}x({len(row['drift_frames'])})"
            values = [row.get(k) for k in present] + [row["fps"], row["peak_rss_mib"], drift]
            cells = [_fmt(v, w) for v, w in zip(values, widths)]
            lines.append(
                "  ".join([f"{row['folder']:<{fw}}", f"{row['sequence']:<{sw}}", f"{row['method']:<{mw}}",
                           f"{row['frames']:>4}", *cells]).rstrip()  # fmt: skip
            )
        means = self.davis_means()
        for info in self.folders:
            if info["layout"] != "davis":
                continue
            ious = {m["method"]: m for m in means if m["folder"] == info["folder"]}
            copy = ious.get(COPY_REFERENCE)
            for engine in self.engines:
                for method in (engine, f"{engine}-coarse"):
                    if method not in ious:
                        continue
                    m = ious[method]
                    beside = f"   copy-reference {copy['IoU']:.4f}" if copy else ""
                    jf = f"  J&F {m['J&F']:.4f}" if m.get("J&F") is not None else ""
                    lines.append(
                        f"{info['folder']}  mean over {m['sequences']} sequences  {method:<{mw}}  IoU {m['IoU']:.4f}{jf}"
                        f"{beside}   worst {m['worst_sequence']} {m['worst_IoU']:.4f}"
                    )
        for engine in self.engines:
            entries = self.davis_sequences(engine)
            if not entries:
                continue
            lines += ["", f"{engine} per sequence, worst J&F first:  folder  sequence  J  F  J&F  (copy-reference J  J&F)"]
            for e in entries:
                cells = "  ".join(_fmt(e[k], 7) for k in ("J", "F", "J&F"))
                copy = "  ".join(_fmt(e[k], 7) for k in ("copy_J", "copy_J&F"))
                lines.append(f"  {e['folder']:<{fw}}  {e['sequence']:<{sw}}  {cells}   ({copy})")
        lines += [
            "",
            "scales from metrics.METRIC_SCALES; IoU: alpha > 0.5 vs the ground truth (> 0.5); *_unknown: trimap "
            "unknown region; RSS: peak resident memory of the process that ran the row; drift: max/median "
            f"per-frame error (SAD, or 1-IoU on DAVIS) and, in brackets, frames above {DRIFT_FACTOR:g}x the median",
        ]
        return "\n".join(lines)

    def plot(self, path) -> Path:
        """Write a PNG of each row's per-frame error (SAD, or 1 - IoU for DAVIS) against frame index.

        One panel per folder and sequence, one line per method; flagged drift
        frames are marked with a cross. Returns the path.
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        panels = list(dict.fromkeys((row["folder"], row["sequence"]) for row in self.rows))
        cols = min(3, max(1, len(panels)))
        nrows = math.ceil(len(panels) / cols) if panels else 1
        figure, axes = plt.subplots(nrows, cols, figsize=(5.5 * cols, 3.4 * nrows), squeeze=False)
        for ax, (folder, sequence) in zip(axes.ravel(), panels):
            for row in self.rows:
                if (row["folder"], row["sequence"]) != (folder, sequence):
                    continue
                curve = row["per_frame"]
                (line,) = ax.plot(curve["index"], curve["error"], label=row["method"], linewidth=1.2)
                flagged = set(row["drift_frames"])
                marks = [(i, e) for i, e in zip(curve["index"], curve["error"]) if i in flagged]
                if marks:
                    ax.plot(*zip(*marks), "x", color=line.get_color(), markersize=7)
                ax.set_ylabel(curve["error_name"] + (" (sum/1000)" if curve["error_name"] == "SAD" else ""))
            ax.set_title(f"{folder} {sequence}".strip(), fontsize=10)
            layout = next(r["layout"] for r in self.rows if (r["folder"], r["sequence"]) == (folder, sequence))
            ax.set_xlabel("target image" if layout == "icm57" else "frame")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        for ax in axes.ravel()[len(panels) :]:
            ax.axis("off")
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90)
        plt.close(figure)
        return atomic_write_bytes(path, buffer.getvalue())

    def contact_sheet(self, path, worst: int = 6) -> Path:
        """Write a PNG of the worst frames across folders: frame | GT alpha | predicted alpha | |error|.

        Frames are ranked by mean absolute error of the engine's alpha against
        the ground truth (the DAVIS mask counts as an alpha of 0 and 1); at most
        the ``keep_worst`` frames kept per folder and engine are available.
        Returns the path.
        """
        chosen = sorted(self.samples, key=lambda s: s["MAE"], reverse=True)[:worst]
        tile_h, band = 180, 22
        strips = []
        for s in chosen:
            h, w = s["gt"].shape
            tile_w = max(1, round(w * tile_h / h))

            def tile(image, interpolation=cv2.INTER_AREA):
                return cv2.resize(image, (tile_w, tile_h), interpolation=interpolation)

            error = np.abs(s["pred"].astype(np.int16) - s["gt"].astype(np.int16)).astype(np.uint8)
            error = cv2.cvtColor(cv2.applyColorMap(error, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
            grey = [cv2.cvtColor(tile(s[k]), cv2.COLOR_GRAY2RGB) for k in ("gt", "pred")]
            strip = np.concatenate([tile(s["frame"]), *grey, tile(error)], axis=1)
            label = f"{s['folder']} {s['sequence']} frame {s['name']}  {s['method']}  MAE {s['MAE']:.4f}  IoU {s['IoU']:.3f}"
            if s["SAD"] is not None:
                label += f"  SAD {s['SAD']:.2f}"
            top = np.full((band, strip.shape[1], 3), 32, np.uint8)
            cv2.putText(top, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
            strips.append(np.concatenate([top, strip], axis=0))
        if not strips:
            strips = [np.full((band, 400, 3), 32, np.uint8)]
            cv2.putText(strips[0], "no frames kept", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
        width = max(s.shape[1] for s in strips)
        sheet = np.concatenate([np.pad(s, ((0, 2), (0, width - s.shape[1]), (0, 0))) for s in strips], axis=0)
        ok, buffer = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        if not ok:
            raise OSError(f"could not encode the contact sheet {path} as PNG")
        return atomic_write_bytes(path, buffer.tobytes())


# ------------------------------------------------------------------ targets


def check_targets(report: BenchReport, *, engine: str = "classical") -> list[str]:
    """Check an engine's rows against the project's targets.

    On synthetic folders: mean SAD <= 1.5x the gt-trimap-solver's and <= 0.5x
    the engine's own coarse mask's, dtSSD <= the solver's (videos), and no
    frame with SAD > 3x the median. On DAVIS folders: mean IoU >= 0.75 and no
    sequence below 0.5.

    Returns
    -------
    list of str
        One line per check, starting with ``PASS`` or ``MISS`` (a miss shows
        the value against the target); empty when the engine has no such rows.
    """
    lines = []

    def check(ok: bool, text: str, value: float, target: float) -> None:
        lines.append(f"PASS {text}" if ok else f"MISS {text} ({value:.4g} vs {target:.4g})")

    rows = {(r["folder"], r["sequence"], r["method"]): r for r in report.rows}
    for info in report.folders:
        folder = info["folder"]
        if info["layout"].startswith("synth"):
            own = rows.get((folder, "", engine))
            if own is None:
                continue
            upper, coarse = rows.get((folder, "", UPPER_BOUND)), rows.get((folder, "", f"{engine}-coarse"))
            if upper is not None:
                check(own["SAD"] <= 1.5 * upper["SAD"], f"{folder} {engine} SAD <= 1.5x {UPPER_BOUND}", own["SAD"], 1.5 * upper["SAD"])
            if coarse is not None:
                check(own["SAD"] <= 0.5 * coarse["SAD"], f"{folder} {engine} SAD <= 0.5x {engine}-coarse", own["SAD"], 0.5 * coarse["SAD"])
            if upper is not None and own["dtSSD"] is not None and upper["dtSSD"] is not None:
                check(own["dtSSD"] <= upper["dtSSD"], f"{folder} {engine} dtSSD <= {UPPER_BOUND}", own["dtSSD"], upper["dtSSD"])
            ratio = own["drift_ratio"] or 0.0
            check(not own["drift_frames"], f"{folder} {engine} no frame with SAD > {DRIFT_FACTOR:g}x median "
                  f"(max/median {ratio:.2f}, flagged {own['drift_frames']})", ratio, DRIFT_FACTOR)  # fmt: skip
        elif info["layout"] == "davis":
            for m in report.davis_means():
                if m["folder"] == folder and m["method"] == engine:
                    check(m["IoU"] >= 0.75, f"{folder} {engine} mean IoU >= 0.75", m["IoU"], 0.75)
                    check(m["worst_IoU"] >= 0.5, f"{folder} {engine} every sequence IoU >= 0.5 (worst {m['worst_sequence']})",
                          m["worst_IoU"], 0.5)  # fmt: skip
    return lines
