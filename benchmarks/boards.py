"""Board figures: flash/SRAM of each shared model on each board, and QEMU runs with instruction counts.

    .venv/bin/python benchmarks/boards.py --out out/boards              # all models x all boards, runs on rp2040 + cortex-m4
    .venv/bin/python benchmarks/boards.py --models kws_ref_model --run-boards rp2040 cortex-m4 cortex-m7 cortex-m33

Compiles each model at --bits (default 4) with `tinycluster compile`, then for every board runs
`tinycluster build` (fits or refuses with the numbers) and, for the --run-boards, `tinycluster run
--samples N` (QEMU bit-exact vs the host build; unicorn instruction count). Prints markdown tables
and writes <out>/boards.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tinycluster.api import compile as tc_compile  # noqa: E402
from tinycluster.boards import available_boards, load_board  # noqa: E402
from tinycluster.builders.board import build_for_board, run_on_board  # noqa: E402
from tinycluster.errors import TinyClusterError  # noqa: E402

MODELS = ["kws_ref_model", "pretrainedResnet_quant", "vww_96_int8", "ad01_int8"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/boards")
    ap.add_argument("--models", nargs="*", default=MODELS)
    ap.add_argument("--boards", nargs="*", default=available_boards())
    ap.add_argument("--run-boards", nargs="*", default=["rp2040", "cortex-m4"])
    ap.add_argument("--run-models", nargs="*", default=["kws_ref_model", "pretrainedResnet_quant"])
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--count", type=int, default=3)
    a = ap.parse_args()
    out = Path(a.out)
    results = {"bits": a.bits, "builds": [], "runs": []}
    for m in a.models:
        d = out / m
        tc_compile(str(REPO.parent / "shared" / "models" / f"{m}.tflite"), bits=a.bits).write(d)
        for b in a.boards:
            try:
                r = build_for_board(d, b)
                results["builds"].append({"model": m, **r})
            except TinyClusterError as e:
                r = json.loads((d / "build.json").read_text()) if (d / "build.json").exists() else {}
                if r.get("board") != b:
                    raise
                results["builds"].append({"model": m, **r, "error": str(e)})
        for b in a.run_boards:
            if m in a.run_models:
                r = run_on_board(d, b, a.samples, count=a.count)
                results["runs"].append({"model": m, **r})
    (out / "boards.json").write_text(json.dumps(results, indent=2) + "\n")

    print(f"\nBuild at {a.bits} bits (flash / SRAM used of the board, bytes):\n")
    print("| model | " + " | ".join(a.boards) + " |")
    print("|---|" + "---|" * len(a.boards))
    for m in a.models:
        cells = []
        for b in a.boards:
            r = next(x for x in results["builds"] if x["model"] == m and x["board"] == b)
            cell = f"{r['flash_used']:,} / {r['sram_used']:,}"
            cells.append(cell if r["fits"] else f"**refused**: {cell} > {r['flash_size']:,} / {r['sram_size']:,}")
        print(f"| {m} | " + " | ".join(cells) + " |")
    print("\nRuns (QEMU, bit-exact vs host; instructions counted with unicorn):\n")
    print("| model | board | QEMU machine | samples | mismatches | instructions / invoke | instructions / MAC | stack |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results["runs"]:
        print(f"| {r['model']} | {r['board']} ({load_board(r['board']).cpu}) | {r['machine']} | {r['samples']} | "
              f"{r['mismatches']} | {r['instructions_per_invoke']:,} | {r['instructions_per_mac']} | {r['stack_used']:,} B |")


if __name__ == "__main__":
    main()
