"""The cycle model (tinycluster/builders/cycles.py): instruction classes and the documented timings.

Figures from the Cortex-M0+ TRM (Arm DDI 0484C) and the Cortex-M4 TRM (Arm DDI 0439B, table 3-1):
see docs/benchmarks.md, "Cycle model".
"""
from __future__ import annotations

import pytest

from tinycluster.builders.cycles import block_cost, classify, estimate, taken_cost, timing_for
from tinycluster.errors import TinyClusterError


@pytest.mark.parametrize("mn,ops,cls", [
    ("ldrsb.w", "lr, [r3, #1]!", "load"), ("ldr", "r0, [sp, #4]", "load"), ("strb.w", "r1, [r2], #1", "store"),
    ("bne.n", "e <f+0xe>", "branch"), ("bls", "10 <x>", "branch"), ("bl", "1234 <memcpy>", "branch"),
    ("cbz", "r0, 20 <x>", "branch"), ("smlad", "r0, r1, r2, r0", "mul"), ("muls", "r0, r1", "mul"),
    ("smlabb", "r0, lr, ip, r0", "mul"), ("smull", "r0, r1, r2, r3", "mul"), ("sdiv", "r0, r1, r2", "div"),
    ("push", "{r4, r5, r6, lr}", "stm"), ("ldmia.w", "r0!, {r1, r2}", "ldm"), ("strd", "r0, r1, [sp]", "stm"),
    ("sxtb16", "r1, r2", "alu"), ("pkhbt", "r0, r1, r2, lsl #16", "alu"), ("it", "lt", "alu"),
    ("movlt", "r0, r1", "alu"), ("teq", "r0, r1", "alu"), ("bics", "r0, r1", "alu"), ("vldr", "s0, [r0]", "fp"),
])
def test_classify(mn, ops, cls):
    assert classify(mn, ops).cls == cls


def test_register_lists_and_pc_writes():
    pop = classify("pop", "{r4, r5, r6, r7, pc}")
    assert pop.cls == "ldm" and pop.nregs == 5 and pop.writes_pc
    assert classify("push", "{r4-r7, lr}").nregs == 5
    assert not classify("pop", "{r4, r5}").writes_pc
    assert classify("ldr.w", "pc, [sp], #4").writes_pc
    assert classify("bl", "100 <f>").is_call and not classify("b.n", "100 <f>").is_call


def test_documented_timings():
    m0, m4 = timing_for("cortex-m0plus"), timing_for("cortex-m4")
    ld, add, mac = classify("ldr", "r0, [r1]"), classify("adds", "r0, r1"), classify("smlad", "r0, r1, r2, r0")
    # M0+: loads 2 cycles each, no pipelining; M4: 2, then 1 for a load directly after a load
    assert block_cost([ld, ld, add], m0) == 2 + 2 + 1
    assert block_cost([ld, ld, add], m4) == 2 + 1 + 1
    assert block_cost([ld, add, ld], m4) == 2 + 1 + 2
    assert block_cost([mac, mac], m4) == 2
    pop_pc = classify("pop", "{r4, pc}")
    # M0+: POP {.., pc} is 3 + N, B taken 2, BL 3; M4: POP 1 + N + P, taken branch 1 + P (P = 2)
    assert block_cost([pop_pc], m0) + taken_cost(pop_pc, m0) == 3 + 2
    b = classify("b.n", "10 <x>")
    assert block_cost([b], m0) + taken_cost(b, m0) == 2 and block_cost([b], m0) == 1
    bl = classify("bl", "10 <x>")
    assert block_cost([bl], m0) + taken_cost(bl, m0) == 3
    assert block_cost([b], m4) + taken_cost(b, m4) == 3
    assert block_cost([pop_pc], m4) + taken_cost(pop_pc, m4) == 1 + 2 + 2


def test_estimate_adds_blocks_and_taken_branches():
    ld, add, b = classify("ldr", "r0, [r1]"), classify("adds", "r0, r1"), classify("bne.n", "0 <l>")
    blocks = {(0, 6): [ld, add, b], (6, 2): [add]}
    est = estimate(blocks, {(0, 6): 10, (6, 2): 1}, {(0, 6): 9}, "cortex-m0plus")
    assert est.instructions == 31
    assert est.cycles == 10 * (2 + 1 + 1) + 1 * 1 + 9 * 1
    assert est.mix["load"] == 10 and est.mix["alu"] == 11 and est.mix["branch"] == 10
    assert est.taken_branches == 9
    with pytest.raises(TinyClusterError, match="no cycle model"):
        timing_for("cortex-a53")
