"""Codebook placement per board: SRAM on XIP/wait-stated flash parts, flash on cached-flash parts,
checked in the linked ELF, and the report's SRAM figure follows the choice."""
import pytest
from elftools.elf.elffile import ELFFile

import tinycluster
from tinycluster.boards import load_board

from conftest import require_tool, shared_model


def symbols(elf_path):
    with open(elf_path, "rb") as f:
        elf = ELFFile(f)
        return {s.name: s["st_value"] for s in elf.get_section_by_name(".symtab").iter_symbols()
                if s["st_info"]["type"] == "STT_OBJECT"}


@pytest.mark.parametrize("board", ["rp2040", "cortex-m4"])
def test_codebooks_follow_the_board(board, tmp_path):
    require_tool("arm-none-eabi-gcc")
    from tinycluster.builders.board import build_for_board

    b = load_board(board)
    m = tinycluster.compile(shared_model("kws_ref_model.tflite"), bits=4, board=board)
    t = m.report["totals"]
    if b.codebook_in == "sram":
        assert t["codebook_sram_bytes"] == t["codebook_bytes"] > 0
    else:
        assert t["codebook_sram_bytes"] == 0
    assert t["sram_bytes"] == t["arena_bytes"] + t["codebook_sram_bytes"]
    out = m.write(tmp_path / board)
    r = build_for_board(out, board)
    syms = symbols(out / r["elf"])
    flash = range(b.flash_origin, b.flash_origin + b.flash_size)
    sram = range(b.sram_origin, b.sram_origin + b.sram_size)
    cbs = [n for n in syms if n.endswith("_cb")]
    idx = [n for n in syms if n.endswith("_idx")]
    assert cbs and idx
    assert all(syms[n] in flash for n in idx)
    want = sram if b.codebook_in == "sram" else flash
    assert all(syms[n] in want for n in cbs)
