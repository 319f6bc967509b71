"""The per-core forms of tc_requantize()'s multiply (tc_common.h) against the reference form.

* host: tc_mul_by_quant_mult_smlal (ARMv7E-M / ARMv8-M Mainline) and tc_mul_by_quant_mult_v6m
  (ARMv6-M) are plain C, so a host program compares both with tc_mul_by_quant_mult_ref on every
  shift in [-31, 30] x edge values (INT32_MIN/MAX, +-1, 16-bit boundaries, multipliers 0, 1,
  2^30, 2^31 - 1, ...) and 200,000 random (x, mult) pairs per shift;
* targets: tc_requantize() as each core family compiles it (Cortex-M4, M33, M0+ at -Os,
  RP2040), run under unicorn on edge + random cases, byte for byte against the host reference
  (numpy, tinycluster.quantize).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import require_tool  # noqa: E402
from tinycluster.builders.host import build_executable  # noqa: E402
from tinycluster.quantize import multiply_by_quantized_multiplier  # noqa: E402

HOST_C = r"""
#include "tc_common.h"
#include <stdio.h>
static uint64_t s = 88172645463325252ull;
static uint32_t rnd(void) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return (uint32_t)s; }
static long bad, n;
static void check(int32_t x, int32_t m, int32_t sh)
{
    const int32_t r = tc_mul_by_quant_mult_ref(x, m, sh);
    n++;
    if (tc_mul_by_quant_mult_smlal(x, m, sh) != r || tc_mul_by_quant_mult_v6m(x, m, sh) != r) {
        if (bad++ < 5) {
            printf("mismatch x=%ld mult=%ld shift=%ld\n", (long)x, (long)m, (long)sh);
        }
    }
}
int main(void)
{
    static const int32_t xe[] = {INT32_MIN, INT32_MIN + 1, -65537, -65536, -65535, -2, -1, 0, 1, 2,
                                 65535, 65536, 65537, 1 << 30, -(1 << 30), INT32_MAX - 1, INT32_MAX};
    static const int32_t me[] = {0, 1, 2, 65535, 65536, 65537, 1 << 30, (1 << 30) + 1, 0x7FFF0000,
                                 0x7FFFFFFE, INT32_MAX, INT32_MIN, -1};
    int32_t sh;
    unsigned i, j;
    long k;
    for (sh = -31; sh <= 30; sh++) {
        for (i = 0; i < sizeof xe / sizeof xe[0]; i++) {
            for (j = 0; j < sizeof me / sizeof me[0]; j++) {
                check(xe[i], me[j], sh);
            }
        }
        for (k = 0; k < 200000; k++) {
            int32_t x = (int32_t)rnd();
            const int32_t m = (int32_t)(rnd() >> (k & 1)); /* half of them in [0, 2^31) */
            if (k & 2) {
                x >>= rnd() & 31; /* small accumulators too */
            }
            check(x, m, sh);
        }
    }
    printf("%ld %ld\n", n, bad);
    return 0;
}
"""


def test_requantize_forms_match_reference_on_host(tmp_path):
    (tmp_path / "t.c").write_text(HOST_C)
    exe = build_executable([tmp_path / "t.c"], tmp_path / "t")
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    n, bad = int(out[-2]), int(out[-1])
    assert n > 12_000_000
    assert bad == 0, " ".join(out)


TARGET_C = r"""
#include "tc_common.h"
#define N 4096
int32_t A[N], M[N], S[N], P[4]; /* P: output offset, act_min, act_max, count */
int8_t O[N];
void tc_harness_entry(void) {}
void run(void)
{
    int32_t i;
    for (i = 0; i < P[3]; i++) {
        O[i] = tc_requantize(A[i], M[i], S[i], P[0], P[1], P[2]);
    }
}
"""


def _cases(rng, n):
    edges_x = np.array([-2**31, -2**31 + 1, -65537, -65536, -1, 0, 1, 65535, 65536, 2**30, 2**31 - 1], np.int64)
    edges_m = np.array([0, 1, 65535, 65536, 2**30, 2**30 + 1, 0x7FFF0000, 2**31 - 2, 2**31 - 1], np.int64)
    ex, em = np.meshgrid(edges_x, edges_m)
    x = np.concatenate([ex.ravel(), rng.integers(-2**31, 2**31, n), rng.integers(-2**20, 2**20, n)])
    m = np.concatenate([em.ravel(), rng.integers(0, 2**31, n), rng.integers(2**30, 2**31, n)])
    s = rng.integers(-31, 31, x.size)
    return x[:4096], m[:4096], s[:4096]


@pytest.mark.parametrize("board", ["cortex-m4", "cortex-m33", "cortex-m0plus", "rp2040"])
def test_requantize_on_target_matches_reference(board):
    require_tool("arm-none-eabi-gcc")
    pytest.importorskip("unicorn")
    from arm_harness import build_machine, read, write

    m = build_machine(board, TARGET_C)
    rng = np.random.default_rng(len(board))
    x, mult, s = _cases(rng, 2100)
    for off, lo, hi in [(0, -128, 127), (-128, -128, 127), (5, -20, 90)]:
        write(m, "A", x.astype(np.int32).tobytes())
        write(m, "M", mult.astype(np.int32).tobytes())
        write(m, "S", s.astype(np.int32).tobytes())
        write(m, "P", np.array([off, lo, hi, x.size], np.int32).tobytes())
        m.call("run")
        got = np.frombuffer(read(m, "O", x.size), np.int8)
        v = multiply_by_quantized_multiplier(x, mult, s) + off
        v = ((v + 2**31) % 2**32) - 2**31  # int32 addition, as the C (and TFLite Micro) computes it
        want = np.clip(v, lo, hi).astype(np.int8)
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, (f"{board}: {bad.size} mismatches, first x={x[bad[0]]} mult={mult[bad[0]]} "
                               f"shift={s[bad[0]]}: {got[bad[0]]} != {want[bad[0]]}")
