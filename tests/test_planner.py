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


def _fc_chain(widths, bits):
    """FC layers widths[0] -> widths[1] -> ..., per-tensor clustered weights of bits[i] bits."""
    from tinycluster.ir import Clustering, Graph, Node, QuantParams, Tensor
    from tinycluster.ops import get_handler

    def q(s, zp=0):
        return QuantParams(np.atleast_1d(np.float32(s)), np.atleast_1d(np.int64(zp)))

    rng = np.random.default_rng(0)
    tensors = [Tensor(0, "x0", (1, widths[0]), "int8", q(0.02, -128))]
    nodes = []
    for i, (n_in, n_out) in enumerate(zip(widths, widths[1:])):
        w = rng.integers(-127, 128, size=(n_out, n_in)).astype(np.int8)
        wt = Tensor(len(tensors), f"w{i}", (n_out, n_in), "int8", q(0.004), data=w)
        k = 1 << bits[i]
        wt.clustering = Clustering(rng.integers(0, k, size=w.shape), np.sort(rng.integers(-127, 128, size=k))
                                   .astype(np.int8)[None, :], bits[i], None, granularity="per-tensor")
        bt = Tensor(len(tensors) + 1, f"b{i}", (n_out,), "int32", q(0.02 * 0.004), data=np.zeros(n_out, np.int32))
        yt = Tensor(len(tensors) + 2, f"x{i + 1}", (1, n_out), "int8", q(0.05, -128))
        tensors += [wt, bt, yt]
        x_id = 0 if i == 0 else tensors[-4].id  # the previous layer's output
        nodes.append(Node(i, "FULLY_CONNECTED", [x_id, wt.id, bt.id], [yt.id],
                          attrs={"activation": "NONE", "keep_num_dims": False, "weights_format": 0}))
    g = Graph(tensors, nodes, [0], [tensors[-1].id], name="fc_chain")
    for n in nodes:
        get_handler(n.op).resolve(n, g)
    return g


def test_optional_fc_scratch_only_where_the_arena_has_room():
    """The FC pair tables are optional scratch: granted where the activations leave room at that
    step, never growing the arena (ad01's shape: 640 -> 128 -> 128 -> 640)."""
    from tinycluster.ops import fully_connected, get_handler
    from tinycluster.planner import plan_memory

    g = _fc_chain([640, 128, 128, 640], [4, 2, 4])
    plan = plan_memory(g)
    assert plan.arena_size == plan_memory(g, scratch_of=lambda n: 0).arena_size  # activations only
    want = {n.index: get_handler(n.op).scratch_bytes(n, g) for n in g.nodes}
    assert all(v > 0 for v in want.values())  # every layer would take a pair table
    # the 2-bit table + widened input (16 entries: 64 + 256 + 3 B) fits beside 128 + 128 B; the
    # 4-bit layers' 2,307 B (full) and 512 B (compact) do not fit beside 640 + 128 B
    assert plan.scratch_size == {0: 0, 1: want[1], 2: 0}
    assert want[1] == fully_connected.scratch_size(g.nodes[1].params, 2, 0) == 323
    # a 4-bit middle layer: the full level (1,283 B) does not fit, the compact one (512 B) does
    g4 = _fc_chain([640, 128, 128, 640], [4, 4, 4])
    plan4 = plan_memory(g4)
    assert plan4.arena_size == plan.arena_size
    assert plan4.scratch_size == {0: 0, 1: 512, 2: 0}
    assert get_handler("FULLY_CONNECTED").scratch_levels(g4.nodes[1], g4) == [1283, 512]
    off = plan.scratch_offset[1]
    live = [plan.tensor_offset[t] for t in (g.nodes[1].inputs[0], g.nodes[1].outputs[0])]
    assert all(off + want[1] <= o or o + 128 <= off for o in live)
