"""The row-buffered in-place schedule never overwrites an input row that is still needed."""
import numpy as np
from hypothesis import given, settings, strategies as st

from tinycluster.planner import simulate_rows


def run_schedule(ih, rin, oh, rout, sh, pt, kh, ring, k=1):
    """Replays the emitted C loop (k rows per kernel call) on a byte array; returns False if a
    needed input byte was clobbered."""
    size = max(ih * rin, oh * rout)
    mem = np.zeros(size, dtype=np.int64)
    mem[: ih * rin] = np.arange(ih * rin) + 1  # input byte tags
    ring_buf = {}
    done = 0
    assert ring % k == 0
    for oy0 in range(0, oh, k):
        oy1 = min(oy0 + k, oh)
        for oy in range(oy0, oy1):  # the call reads every input row of its output rows first
            lo, hi = max(0, oy * sh - pt), min(ih - 1, oy * sh - pt + kh - 1)
            if hi >= lo:
                seg = mem[lo * rin:(hi + 1) * rin]
                if not np.array_equal(seg, np.arange(lo * rin, (hi + 1) * rin) + 1):
                    return False
        assert oy1 - done <= ring, "ring overflow"
        assert (oy0 % ring) + (oy1 - oy0) <= ring, "a call's rows wrap around the ring"
        for oy in range(oy0, oy1):
            ring_buf[oy % ring] = -(oy + 1)
        if oy1 < oh:
            need = min(ih, max(0, oy1 * sh - pt)) * rin
            while done < oy1 and (done + 1) * rout <= need:
                mem[done * rout:(done + 1) * rout] = ring_buf[done % ring]
                done += 1
    while done < oh:
        mem[done * rout:(done + 1) * rout] = ring_buf[done % ring]
        done += 1
    return all((mem[o * rout:(o + 1) * rout] == -(o + 1)).all() for o in range(oh))


@settings(max_examples=300, deadline=None)
@given(ih=st.integers(1, 20), w=st.integers(1, 6), cin=st.integers(1, 8), cout=st.integers(1, 16),
       kh=st.integers(1, 5), sh=st.integers(1, 3), same=st.booleans(),
       k=st.sampled_from([1, 1, 2, 3, 4, 8]))
def test_ring_schedule_is_safe(ih, w, cin, cout, kh, sh, same, k):
    if same:
        oh = (ih + sh - 1) // sh
        pad_total = max((oh - 1) * sh + kh - ih, 0)
        pt = pad_total // 2
    else:
        if kh > ih:
            return
        oh = (ih - kh) // sh + 1
        pt = 0
    rin, rout = w * cin, w * cout
    k = min(k, oh)
    ring = simulate_rows(oh, rin, rout, sh, pt, ih, k)
    assert 1 <= ring <= oh + k - 1 and ring % k == 0
    assert run_schedule(ih, rin, oh, rout, sh, pt, kh, ring, k)


def test_ring_is_small_for_same_size_3x3():
    # 3x3 stride-1 SAME conv with equal row sizes needs only two rows of ring
    assert simulate_rows(25, 320, 320, 1, 1, 25) == 2
    # pointwise conv with equal row sizes: one row
    assert simulate_rows(25, 320, 320, 1, 0, 25) == 1
    # five rows per call: a ring of five
    assert simulate_rows(25, 320, 320, 1, 0, 25, 5) == 5
