"""Side-by-side host benchmark: generated C (-O2, cffi) vs the TFLite Micro interpreter.

For each shared int8 model: compile at the given bits, build the C for the host, then time
both on the same inputs, interleaved (C, TFLM, C, TFLM, ...) so that machine noise hits both
alike; report medians and their ratio. Also memory: our planned arena vs TFLM's
"Arena allocation head", and flash vs the int8 .tflite weights.

    .venv/bin/python benchmarks/host_vs_tflm.py [--bits 4] [--repeat 50] [--json out.json]
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


def bench(path: Path, bits: int, repeat: int, granularity: str):
    m = tinycluster.compile(path, bits=bits, granularity=granularity)
    host = m.build_host()
    ref = TFLMReference(m.clustered_tflite)
    rng = np.random.default_rng(0)
    xs = [rng.integers(-128, 128, size=host.in_shape, dtype=np.int8) for _ in range(repeat)]
    for x in xs[:3]:  # warm-up
        host.invoke(x)
        ref.invoke(x)
    tc, tf = [], []
    for x in xs:
        tc.append(host.time_invoke(x, repeat=1))
        tf.append(ref.invoke(x)[1])
    t = m.report["totals"]
    return {
        "model": path.name, "bits": bits, "granularity": granularity,
        "host_c_us": float(np.median(tc)) * 1e6, "tflm_us": float(np.median(tf)) * 1e6,
        "speedup": float(np.median(tf) / np.median(tc)),
        "arena_bytes": t["arena_bytes"], "tflm_arena_head": tflm_arena_head(m.clustered_tflite),
        "flash_bytes": t["flash_bytes"], "int8_weight_bytes": t["int8_weight_bytes"],
        "sram_bytes": t["sram_bytes"], "macs": t["macs"],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--granularity", default="auto")
    ap.add_argument("--models", nargs="*", default=MODELS)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    rows = []
    for name in a.models:
        rows.append(bench(REPO / ".." / "shared" / "models" / name, a.bits, a.repeat, a.granularity))
    print(f"# host: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"bits {a.bits}, granularity {a.granularity}, {a.repeat} inputs, medians")
    print("| model | MACs | host C (us) | TFLM (us) | speed-up | arena (B) | TFLM head (B) | arena/TFLM | flash (B) | int8 baseline (B) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['macs']:,} | {r['host_c_us']:.1f} | {r['tflm_us']:.1f} | {r['speedup']:.1f}x | "
              f"{r['arena_bytes']:,} | {r['tflm_arena_head']:,} | {r['arena_bytes'] / r['tflm_arena_head']:.2f} | "
              f"{r['flash_bytes']:,} | {r['int8_weight_bytes']:,} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
