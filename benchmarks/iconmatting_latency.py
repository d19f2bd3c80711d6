"""Per-target latency and memory of the IconMatting network, real-size architecture, random weights.

Builds the SD 2.1 (768-v) UNet and VAE from their configs (no download; random
weights time the same as the real ones) and the released decoder, then times at
``--resolution`` (default 768) with an ensemble of ``--ensemble`` (default 4):

- **uncached**: a target matted from scratch, reference pass included
  (``model(reference, mask, target)``: what the released code does per pair);
- **cached**: a target matted with the reference's query tokens already
  computed (``model.matte(target, query)``: one VAE encode, one UNet pass, the decoder);
- the decoder alone and (``--parts``, default on a GPU) the reference encoding
  and the VAE encode + UNet (with attention recording) of a target on their own;
- **peak memory of a cached target pass**, over the cached timing runs: on a GPU
  ``torch.cuda.max_memory_allocated`` (and the increase over the weights); on a
  CPU the peak resident set size sampled every 5 ms, and its increase over the
  RSS before the pass.

On a GPU every measurement is repeated for each ``--dtypes`` entry (default
float32 and bfloat16 for the frozen SD part; the decoder stays float32) and the
cached rate is also reported for ``--batch`` targets per call. Prints a markdown
table and, with ``--json``, writes all numbers.

Usage::

    python benchmarks/iconmatting_latency.py --repeats 1 --threads 2     # this CPU: minutes, ~5 GB RSS
    python benchmarks/iconmatting_latency.py --device cuda --repeats 20 --batch 4
    python benchmarks/iconmatting_latency.py --config tiny --repeats 3   # seconds: checks the script
    python benchmarks/iconmatting_latency.py --flops-only                # operations per target (any device)

This is not a test: it takes minutes on a CPU and its numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRSS:
    """Samples the resident set size in a thread while the block runs (Linux)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> "_PeakRSS":
        self.before = _rss_bytes()
        self.peak = self.before
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def _timed(fn, device, repeats: int, cpu_times: list | None = None) -> list[float]:
    """Wall seconds of ``repeats`` calls; the process CPU seconds of each go to ``cpu_times``."""
    import torch

    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        if cpu_times is not None:
            cpu_times.append(time.process_time() - cpu_start)
    return times


def measure(model, device, dtype_name: str, args) -> dict:
    """All timings for one precision; the model is already on ``device``."""
    import torch

    config = model.config
    side = config.resolution
    generator = torch.Generator().manual_seed(0)
    reference = (torch.rand(1, 3, side, side, generator=generator) * 2 - 1).to(device)
    target = (torch.rand(1, 3, side, side, generator=generator) * 2 - 1).to(device)
    mask = torch.zeros(1, 1, side, side, device=device)
    mask[..., side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = 1.0
    extractor = model.feature_extractor
    extractor.to(getattr(torch, dtype_name))
    result = {"dtype": dtype_name}

    with torch.inference_mode():
        query = model.encode_reference(reference, mask, seed=0)
        for _ in range(args.warmup):  # the reference path was warmed up by the encoding just above
            model.matte(target, query, seed=0)
        result["query_tokens"] = int(query.tokens[0].shape[0])
        result["uncached_cpu_s"], result["cached_cpu_s"] = [], []
        result["uncached_s"] = _timed(lambda: model(reference, mask, target, seed=0), device, args.repeats, result["uncached_cpu_s"])
        # the cached timing runs double as the memory measurement of a target pass
        if device.type == "cuda":
            torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            result["cached_s"] = _timed(lambda: model.matte(target, query, seed=0), device, args.repeats, result["cached_cpu_s"])
            result["peak_memory_bytes"] = torch.cuda.max_memory_allocated()
            result["pass_memory_bytes"] = result["peak_memory_bytes"] - base
        else:
            with _PeakRSS() as rss:
                result["cached_s"] = _timed(lambda: model.matte(target, query, seed=0), device, args.repeats, result["cached_cpu_s"])
            result["peak_memory_bytes"] = rss.peak
            result["pass_memory_bytes"] = rss.peak - rss.before
        holder = {}
        if args.parts:
            result["reference_s"] = _timed(lambda: model.encode_reference(reference, mask, seed=0), device, args.repeats)
            result["features_s"] = _timed(lambda: holder.update(t=extractor.target_features(target, seed=0)), device, args.repeats)
        else:
            holder["t"] = extractor.target_features(target, seed=0)
        feats = holder.pop("t")
        features = tuple(f.float() for f in feats.features)
        result["decoder_s"] = _timed(lambda: model.decoder(query, features, feats.attention, target.float()), device, args.repeats)
        del feats, features
        if device.type == "cuda" and args.batch > 1:
            targets = target.expand(args.batch, -1, -1, -1).contiguous()
            batch_query = type(query)(query.tokens * args.batch, query.fallback * args.batch)
            model.matte(targets, batch_query, seed=0)
            times = _timed(lambda: model.matte(targets, batch_query, seed=0), device, args.repeats)
            result["batch"] = args.batch
            result["batched_targets_per_s"] = args.batch / statistics.median(times)
    return result


def count_flops(model, device) -> dict:
    """Floating-point operations of one reference encoding and one cached target pass.

    Counted by ``torch.utils.flop_counter`` on the real forward (any device), split
    by kind: convolutions (which cuDNN runs on TF32 tensor cores even in float32
    by default), matrix products (linear layers, attention, the recorded
    attention maps; true float32 in float32) and the rest.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    side = model.config.resolution
    generator = torch.Generator().manual_seed(0)
    image = (torch.rand(1, 3, side, side, generator=generator) * 2 - 1).to(device)
    mask = torch.zeros(1, 1, side, side, device=device)
    mask[..., side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = 1.0
    out = {}
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            query = model.encode_reference(image, mask, seed=0)
        out["reference_flops"] = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            model.matte(image, query, seed=0)
    out["target_flops"] = counter.get_total_flops()
    kinds = {"convolution": 0, "matmul": 0, "other": 0}
    for op, flops in counter.get_flop_counts()["Global"].items():
        name = str(op)
        kind = "convolution" if "convolution" in name else "matmul" if any(k in name for k in ("mm", "addmm", "bmm", "attention")) else "other"
        kinds[kind] += flops
    out["target_flops_by_kind"] = kinds
    out["target_flops_by_module"] = {  # the top-level modules: VAE encoder, UNet, decoder
        str(k): sum(v.values()) for k, v in counter.get_flop_counts().items() if k != "Global" and "." not in str(k)
    }
    return out


def _fmt_s(values) -> str:
    med = statistics.median(values)
    return f"{med * 1000:.1f} ms" if med < 1 else f"{med:.2f} s"


def table(results: list[dict], meta: dict) -> str:
    lines = [
        f"IconMatting at {meta['resolution']}x{meta['resolution']}, ensemble {meta['ensemble']}, {meta['config']} architecture "
        f"(random weights), {meta['device_name']}, torch {meta['torch']}, {meta['threads']} threads, "
        f"{meta['repeats']} repeat(s) (median), {meta['date']}",
        "",
        "| precision (SD part) | uncached target | cached target | cached / uncached | targets/s (cached) | reference encode | VAE+UNet | decoder | peak memory (target pass) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    cpu_rows = []
    for r in results:
        ratio = statistics.median(r["cached_s"]) / statistics.median(r["uncached_s"])
        cpu_ratio = statistics.median(r["cached_cpu_s"]) / statistics.median(r["uncached_cpu_s"])
        cpu_rows.append(
            f"process CPU time ({r['dtype']}): uncached {statistics.median(r['uncached_cpu_s']):.1f} s, "
            f"cached {statistics.median(r['cached_cpu_s']):.1f} s, cached / uncached {cpu_ratio:.2f}"
        )
        rate = 1.0 / statistics.median(r["cached_s"])
        rate_text = f"{rate:.2f}" + (f" ({r['batched_targets_per_s']:.2f} at batch {r['batch']})" if "batch" in r else "")
        memory = f"{r['peak_memory_bytes'] / 2**30:.2f} GiB (+{r['pass_memory_bytes'] / 2**30:.2f} GiB for the pass)"
        parts = [_fmt_s(r[k]) if k in r else "–" for k in ("reference_s", "features_s", "decoder_s")]
        lines.append(
            f"| {r['dtype']} | {_fmt_s(r['uncached_s'])} | {_fmt_s(r['cached_s'])} | {ratio:.2f} | {rate_text} | "
            f"{' | '.join(parts)} | {memory} |"
        )
    if meta["device"] == "cpu":  # wall time depends on what else runs; CPU time much less
        lines += ["", *cpu_rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=("sd21", "tiny"), default="sd21", help="architecture (default sd21: real size)")
    parser.add_argument("--resolution", type=int, default=None, help="input side (default 768; 64 for tiny)")
    parser.add_argument("--ensemble", type=int, default=4, help="noisy copies per image (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each measurement (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed target passes first (default 1)")
    parser.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps")
    parser.add_argument("--dtypes", default=None, help="comma-separated precisions of the SD part (default float32 on CPU, float32,bfloat16 on GPU)")
    parser.add_argument("--batch", type=int, default=1, help="also time BATCH targets per call (GPU only)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--parts", action=argparse.BooleanOptionalAction, default=None,
                        help="also time the reference encoding and the VAE+UNet part alone (default: on GPU only)")
    parser.add_argument("--flops", action="store_true",
                        help="also count the floating-point operations of a reference encoding and a target pass (one more pass of each)")
    parser.add_argument("--flops-only", action="store_true", help="only count the operations (no timing)")
    parser.add_argument("--json", type=Path, help="write the numbers as JSON")
    args = parser.parse_args(argv)

    import torch

    from napari_iconmat.core.engines.iconmat.config import IconMattingConfig
    from napari_iconmat.core.engines.iconmat.engine import _pick_device
    from napari_iconmat.core.engines.iconmat.model import InContextMatting

    if args.threads:
        torch.set_num_threads(args.threads)
    device = _pick_device(args.device)
    if args.parts is None:
        args.parts = device.type != "cpu"
    dtypes = args.dtypes.split(",") if args.dtypes else (["float32"] if device.type == "cpu" else ["float32", "bfloat16"])
    common = dict(ensemble_size=args.ensemble)
    if args.resolution:
        common["resolution"] = args.resolution
    config = IconMattingConfig.random_sd21(**common) if args.config == "sd21" else IconMattingConfig.tiny(**common)

    started = time.perf_counter()
    torch.manual_seed(0)
    model = InContextMatting(config).eval().to(device)
    build_s = time.perf_counter() - started
    print(f"built the {args.config} model in {build_s:.1f} s "
          f"({sum(p.numel() for p in model.feature_extractor.parameters()) / 1e6:.1f} M frozen, "
          f"{sum(p.numel() for p in model.decoder.parameters()) / 1e6:.2f} M decoder parameters)", flush=True)  # fmt: skip

    flops = None
    if args.flops or args.flops_only:
        flops = count_flops(model, device)
        kinds = flops["target_flops_by_kind"]
        print(
            f"operations: reference encoding {flops['reference_flops'] / 1e12:.2f} TFLOP; cached target pass "
            f"{flops['target_flops'] / 1e12:.2f} TFLOP ({', '.join(f'{k} {v / 1e12:.2f}' for k, v in kinds.items())}; "
            f"by module: {', '.join(f'{k} {v / 1e12:.2f}' for k, v in flops['target_flops_by_module'].items())}); "
            f"cached / uncached {flops['target_flops'] / (flops['target_flops'] + flops['reference_flops']):.2f}",
            flush=True,
        )
        if args.flops_only:
            if args.json:
                args.json.write_text(json.dumps({"flops": flops}, indent=2) + "\n")
            return 0
    results = []
    for dtype_name in dtypes:
        print(f"measuring {dtype_name} ...", flush=True)
        results.append(measure(model, device, dtype_name, args))
    meta = {
        "config": args.config,
        "resolution": config.resolution,
        "ensemble": config.ensemble_size,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "build_s": build_s,
        "date": datetime.date.today().isoformat(),
    }
    print(table(results, meta))
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": results, "flops": flops}, indent=2) + "\n")
        print(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
