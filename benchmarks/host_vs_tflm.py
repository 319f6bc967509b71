"""Side-by-side host benchmark: generated C (-O2, cffi) vs the TFLite Micro interpreter.

For each shared int8 model: compile at the given bits, build the C for the host, then time
both on the same inputs, interleaved (C, TFLM, C, TFLM, ...) so that machine noise hits both
alike; report medians and their ratio. Also memory: our planned arena vs TFLM's
"Arena allocation head", and flash vs the int8 .tflite weights.

    .venv/bin/python benchmarks/host_vs_tflm.py [--bits 4] [--repeat 50] [--json out.json]

Issue 10's host line (generated C >= 6x TFLM at 3, 4, 5, 6 bits and --lossless, spread of three
runs): ``--bits 3,4,5,6,lossless --runs 3`` compiles each model once per setting and repeats the
interleaved timing three times; the table then shows the median speed-up and its min..max, and a
PASS/FAIL line per setting.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import tinycluster  # noqa: E402
from tinycluster.verify import TFLMReference, tflm_arena_head  # noqa: E402

MODELS = ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "vww_96_int8.tflite", "ad01_int8.tflite"]


def _setting(s: str):
    """'4' -> 4 bits; 'lossless' -> None (compile's --lossless)."""
    return None if s == "lossless" else int(s)


def bench(path: Path, bits, repeat: int, granularity: str, runs: int = 1):
    if bits is None:
        m = tinycluster.compile(path, lossless=True, granularity=granularity)
    else:
        m = tinycluster.compile(path, bits=bits, granularity=granularity)
    host = m.build_host()
    ref = TFLMReference(m.clustered_tflite)
    rng = np.random.default_rng(0)
    xs = [rng.integers(-128, 128, size=host.in_shape, dtype=np.int8) for _ in range(repeat)]
    for x in xs[:3]:  # warm-up
        host.invoke(x)
        ref.invoke(x)
    speedups, tcs, tfs = [], [], []
    for _ in range(runs):
        tc, tf = [], []
        for x in xs:
            tc.append(host.time_invoke(x, repeat=1))
            tf.append(ref.invoke(x)[1])
        tcs.append(float(np.median(tc)))
        tfs.append(float(np.median(tf)))
        speedups.append(tfs[-1] / tcs[-1])
    t = m.report["totals"]
    return {
        "model": path.name, "bits": "lossless" if bits is None else bits, "granularity": granularity,
        "host_c_us": float(np.median(tcs)) * 1e6, "tflm_us": float(np.median(tfs)) * 1e6,
        "speedup": float(np.median(speedups)), "speedup_runs": speedups,
        "arena_bytes": t["arena_bytes"], "tflm_arena_head": tflm_arena_head(m.clustered_tflite),
        "flash_bytes": t["flash_bytes"], "int8_weight_bytes": t["int8_weight_bytes"],
        "sram_bytes": t["sram_bytes"], "macs": t["macs"],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bits", default="4", help="comma-separated widths and/or 'lossless', e.g. 3,4,5,6,lossless")
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--runs", type=int, default=1, help="timing runs per setting (speed-up median, min..max)")
    ap.add_argument("--min-speedup", type=float, default=6.0, help="the PASS/FAIL line's bound")
    ap.add_argument("--granularity", default="auto")
    ap.add_argument("--models", nargs="*", default=MODELS)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    settings = [_setting(s.strip()) for s in a.bits.split(",") if s.strip()]
    rows = []
    for bits in settings:
        for name in a.models:
            rows.append(bench(REPO / ".." / "shared" / "models" / name, bits, a.repeat, a.granularity, a.runs))
    print(f"# host: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"bits {a.bits}, granularity {a.granularity}, {a.repeat} inputs x {a.runs} run(s), medians")
    print("| model | bits | MACs | host C (us) | TFLM (us) | speed-up (min..max) | arena (B) | TFLM head (B) | "
          "arena/TFLM | flash (B) | int8 baseline (B) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        sp = r["speedup_runs"]
        spread = f" ({min(sp):.1f}..{max(sp):.1f})" if len(sp) > 1 else ""
        print(f"| {r['model']} | {r['bits']} | {r['macs']:,} | {r['host_c_us']:.1f} | {r['tflm_us']:.1f} | "
              f"{r['speedup']:.1f}x{spread} | {r['arena_bytes']:,} | {r['tflm_arena_head']:,} | "
              f"{r['arena_bytes'] / r['tflm_arena_head']:.2f} | {r['flash_bytes']:,} | {r['int8_weight_bytes']:,} |")
    for bits in settings:
        label = "lossless" if bits is None else bits
        sel = [r for r in rows if r["bits"] == label]
        worst = min(sel, key=lambda r: min(r["speedup_runs"]))
        ok = all(min(r["speedup_runs"]) >= a.min_speedup for r in sel)
        print(f"{'PASS' if ok else 'FAIL'}  host C >= {a.min_speedup:g}x TFLM at bits {label} on every model "
              f"(slowest run: {worst['model']} {min(worst['speedup_runs']):.1f}x)")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
