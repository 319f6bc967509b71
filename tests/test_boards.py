"""Board profiles, cross builds, QEMU runs bit-exact with the host, placement, firmware output."""
import json
import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from conftest import require_tool, shared_model
from tinycluster.boards import SCHEMA, available_boards, load_all_boards, load_board
from tinycluster.errors import TinyClusterError
from tinycluster.paths import BOARDS_DIR

BOARDS = available_boards()
# one board per distinct CPU: ARMv6-M, ARMv7E-M (M4F), ARMv7E-M (M7), ARMv8-M mainline
RUN_BOARDS = ["rp2040", "cortex-m4", "cortex-m7", "cortex-m33"]


def _compile(model, out, **kw):
    from tinycluster.api import compile as tc_compile
    tc_compile(str(model), bits=4, **kw).write(out)
    return out


@pytest.fixture(scope="module")
def kws_dir(tmp_path_factory):
    return _compile(shared_model("kws_ref_model.tflite"), tmp_path_factory.mktemp("boards") / "kws")


@pytest.fixture(scope="module")
def kws_rp2040_dir(tmp_path_factory):
    return _compile(shared_model("kws_ref_model.tflite"), tmp_path_factory.mktemp("boards") / "kws_rp",
                    board="rp2040")


def _copy(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("board-*", "build.json", "run.json"))
    return dst


# ---------------------------------------------------------------------------------------------
# profiles
# ---------------------------------------------------------------------------------------------
def test_every_profile_loads():
    boards = load_all_boards()
    assert {b.name for b in boards} >= {"rp2040", "cortex-m0plus", "cortex-m4", "cortex-m7", "cortex-m33"}
    for b in boards:
        assert b.path.stem == b.name
        assert any(f == f"-mcpu={b.cpu}" for f in b.cflags)
        assert b.flash_size > 0 and b.sram_size > 0 and b.stack_reserve > 0
        opts = b.emit_options()
        assert opts["codebook_placement"] in ("sram", "flash")
    rp = load_board("rp2040")
    assert rp.cpu == "cortex-m0plus" and rp.flash_size == 2 * 1024 * 1024 and rp.sram_size == 264 * 1024
    assert rp.firmware_sdk == "pico" and rp.codebook_in == "sram"
    assert rp.emit_options()["flash_section"] == '__attribute__((section(".rodata.tc_indices")))'
    assert load_board("cortex-m4").hard_float and not rp.hard_float
    assert load_board("cortex-m33").qemu_flash_origin == 0x10000000


def _profile_text(**changes):
    text = (BOARDS_DIR / "cortex-m0plus.toml").read_text()
    for old, new in changes.items():
        text = re.sub(rf"^{old}\s*=.*$", new, text, flags=re.M) if new is not None else \
            re.sub(rf"^{old}\s*=.*\n", "", text, flags=re.M)
    return text


@pytest.mark.parametrize("changes, words", [
    ({"flash_size": None}, ["missing", "flash_size"]),
    ({"sram_size": 'sram_size = "lots"'}, ["sram_size", "integer"]),
    ({"codebook_in": 'codebook_in = "eeprom"'}, ["codebook_in", "sram"]),
    ({"opt": 'opt = "-O9"'}, ["opt"]),
    ({"machine": 'machine = "mps2-an386"\nmachin = "typo"'}, ["unknown key", "machin"]),
    ({"index_section": 'index_section = ".data.idx"'}, ["index_section"]),
])
def test_bad_profile_names_file_and_key(tmp_path, changes, words):
    p = tmp_path / "myboard.toml"
    p.write_text(_profile_text(**changes).replace('name = "cortex-m0plus"', 'name = "myboard"'))
    with pytest.raises(TinyClusterError) as e:
        load_board(str(p))
    msg = str(e.value)
    assert "myboard.toml" in msg and "\n" not in msg
    for w in words:
        assert w in msg


def test_bad_toml_and_unknown_board(tmp_path):
    p = tmp_path / "broken.toml"
    p.write_text("name = [unclosed\n")
    with pytest.raises(TinyClusterError, match="broken.toml.*not valid TOML"):
        load_board(str(p))
    with pytest.raises(TinyClusterError, match="unknown board 'nope'.*rp2040"):
        load_board("nope")


def test_schema_documented():
    readme = (BOARDS_DIR / "README.md").read_text()
    for sec, keys in SCHEMA.items():
        if sec:
            assert f"[{sec}]" in readme
        for k in keys:
            assert f"`{k}`" in readme, k


# ---------------------------------------------------------------------------------------------
# build: every board, budget, placement
# ---------------------------------------------------------------------------------------------
def _symbols(elf):
    from elftools.elf.elffile import ELFFile
    with open(elf, "rb") as f:
        return {s.name: s["st_value"] for s in ELFFile(f).get_section_by_name(".symtab").iter_symbols()
                if s["st_info"]["type"] == "STT_OBJECT"}


@pytest.mark.parametrize("board", BOARDS)
def test_every_board_builds_kws(kws_dir, board):
    require_tool("arm-none-eabi-gcc")
    from tinycluster.builders.board import build_for_board
    b = load_board(board)
    r = build_for_board(kws_dir, board)
    on_disk = json.loads((kws_dir / "build.json").read_text())
    assert on_disk["board"] == board and on_disk == json.loads(json.dumps(r))
    s = r["sections"]
    assert r["flash_used"] == s["text"] + s["rodata"] + s["data"]
    assert r["sram_used"] == s["data"] + s["bss"] + b.stack_reserve
    assert r["flash_size"] == b.flash_size and r["sram_size"] == b.sram_size and r["fits"]
    report = json.loads((kws_dir / "report.json").read_text())["totals"]
    # the const data the report promises is really in the image, and the arena in .bss
    assert s["rodata"] + s["data"] >= report["flash_bytes"] - 64
    assert s["bss"] >= report["arena_bytes"]
    assert s["data"] >= report["codebook_bytes"]  # codebooks are initialized SRAM data
    # only mem* from libc and integer helpers from libgcc: no float in the int8 path, no printf & co
    for sym in r["libc_symbols"]:
        assert sym in ("memcpy", "memset", "memmove") or sym.startswith(("__aeabi_", "__gnu_thumb1_case")), sym
        assert not re.match(r"__aeabi_([fd](add|sub|mul|div|cmp)|[fd]2|[iu]2[fd]|l2[fd]|ui2[fd])", sym), sym

    # independent placement check from the ELF symbol table
    p = r["placement"]
    elf = kws_dir / r["elf"]
    syms = _symbols(elf)
    idx = [n for n in syms if n.endswith("_idx")]
    cbs = [n for n in syms if n.endswith("_cb")]
    assert len(idx) == p["index_arrays_in_flash"] == 10  # 5 conv + 4 depthwise + 1 FC
    # every layer with a codebook (a layer whose clustered form would not be smaller than int8
    # is stored as raw int8 weights, without one: kws's first depthwise at 4 bits)
    n_cb = sum(1 for layer in json.loads((kws_dir / "report.json").read_text())["layers"]
               if layer.get("codebook_bytes"))
    assert 1 <= n_cb <= 10
    assert len(cbs) == p["codebooks_in_sram"] == n_cb
    flash = range(b.flash_origin, b.flash_origin + b.flash_size)
    sram = range(b.sram_origin, b.sram_origin + b.sram_size)
    for n in idx:
        assert syms[n] in flash, n
    for n in cbs:
        assert syms[n] in sram, n
    assert p["arena"] and syms[p["arena"]["symbol"]] in sram
    assert p["arena"]["size"] >= report["arena_bytes"]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["pretrainedResnet_quant", "vww_96_int8", "ad01_int8"])
def test_every_board_builds_or_refuses_other_models(tmp_path, model):
    """The other shared models at 4 bits: every board builds them where they fit and refuses
    with the numbers where they do not (the generic 32 KB-SRAM Cortex-M0+ is too small for some)."""
    require_tool("arm-none-eabi-gcc")
    from tinycluster.builders.board import build_for_board
    d = _compile(shared_model(f"{model}.tflite"), tmp_path / model)
    outcomes = {}
    for board in BOARDS:
        b = load_board(board)
        try:
            r = build_for_board(d, board)
            assert r["fits"] and r["flash_used"] <= b.flash_size and r["sram_used"] <= b.sram_size
            assert r["placement"]["index_arrays_in_flash"] > 0 and r["placement"]["arena"]
            outcomes[board] = "fits"
        except TinyClusterError as e:
            r = json.loads((d / "build.json").read_text())
            assert r["board"] == board and not r["fits"]
            assert r["flash_used"] > b.flash_size or r["sram_used"] > b.sram_size
            msg = str(e)
            assert "does not fit" in msg and "\n" not in msg
            if r["sram_used"] > b.sram_size:
                assert f"{r['sram_used']:,}" in msg and f"{b.sram_size:,}" in msg
            if r["flash_used"] > b.flash_size:
                assert f"{r['flash_used']:,}" in msg and f"{b.flash_size:,}" in msg
            outcomes[board] = "refused"
    # the boards with >= 256 KB SRAM hold every shared model at 4 bits
    for board in ("rp2040", "cortex-m4", "cortex-m7", "cortex-m33"):
        assert outcomes[board] == "fits", (board, outcomes)


def test_section_attributes_from_board(kws_rp2040_dir):
    """compile --board rp2040 puts index arrays/codebooks in the profile's sections (checked in the object)."""
    require_tool("arm-none-eabi-gcc")
    from elftools.elf.elffile import ELFFile

    from tinycluster.builders.board import build_for_board
    r = build_for_board(kws_rp2040_dir, "rp2040")
    n_cb = sum(1 for layer in json.loads((kws_rp2040_dir / "report.json").read_text())["layers"]
               if layer.get("codebook_bytes"))
    assert r["notes"] == [] and r["placement"]["section_attributes_checked"] == 10 + n_cb
    obj = kws_rp2040_dir / "board-rp2040" / "build" / "model_kws_ref_model.o"
    with open(obj, "rb") as f:
        ef = ELFFile(f)
        secs = {s.name: ef.get_section(s["st_shndx"]).name for s in ef.get_section_by_name(".symtab").iter_symbols()
                if s["st_info"]["type"] == "STT_OBJECT" and isinstance(s["st_shndx"], int)}
    assert {v for k, v in secs.items() if k.endswith("_idx")} == {".rodata.tc_indices"}
    assert {v for k, v in secs.items() if k.endswith("_cb")} == {".data.tc_codebooks"}


def test_placement_check_can_fail(kws_dir):
    """Swap the regions: the check must refuse, naming the symbol and address."""
    require_tool("arm-none-eabi-gcc")
    from tinycluster.builders.board import build_for_board, check_placement, find_model
    b = load_board("cortex-m4")
    r = build_for_board(kws_dir, b)
    elf = kws_dir / r["elf"]
    with pytest.raises(TinyClusterError, match=r"placement check failed for '.*' .* at 0x"):
        check_placement(elf, find_model(kws_dir), (b.sram_origin, b.sram_size), (b.flash_origin, b.flash_size))


def test_over_budget_refused_with_numbers(kws_dir, tmp_path):
    require_tool("arm-none-eabi-gcc")
    from tinycluster.builders.board import build_for_board
    p = tmp_path / "tiny.toml"
    p.write_text(_profile_text(flash_size="flash_size = 16384", sram_size="sram_size = 8192")
                 .replace('name = "cortex-m0plus"', 'name = "tiny"'))
    d = _copy(kws_dir, tmp_path / "kws")
    with pytest.raises(TinyClusterError) as e:
        build_for_board(d, str(p))
    msg = str(e.value)
    r = json.loads((d / "build.json").read_text())
    assert not r["fits"] and r["flash_used"] > 16384 and r["sram_used"] > 8192
    assert "does not fit board 'tiny'" in msg and "\n" not in msg
    assert f"{r['flash_used']:,}" in msg and "16,384" in msg and f"{r['sram_used']:,}" in msg and "8,192" in msg


# ---------------------------------------------------------------------------------------------
# run in QEMU: bit-exact with the host, instruction counts
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("board", RUN_BOARDS)
def test_run_bit_exact_in_qemu(kws_dir, tmp_path, board):
    require_tool("arm-none-eabi-gcc")
    require_tool("qemu-system-arm")
    from tinycluster.builders.board import run_on_board
    d = _copy(kws_dir, tmp_path / "kws")
    r = run_on_board(d, board, samples=4, seed=7, count=1)
    on_disk = json.loads((d / "run.json").read_text())
    assert on_disk["board"] == board and on_disk["machine"] == load_board(board).qemu_machine
    assert on_disk["samples"] == 4 and on_disk["mismatches"] == 0
    assert r["counter"]["mismatches"] == 0  # unicorn computed the same bytes as the host too
    macs = json.loads((d / "report.json").read_text())["totals"]["macs"]
    assert r["instructions_per_invoke"] > macs  # at least one instruction per MAC on these cores
    assert r["instructions_per_mac"] == round(r["instructions_per_invoke"] / macs, 3)
    assert 0 < r["stack_used"] <= load_board(board).stack_reserve
    # estimated cycles: every instruction costs at least one cycle in every core model, the mix
    # adds up to the count, and milliseconds follow from the profile's clock
    assert r["cycles_per_invoke"] >= r["instructions_per_invoke"]
    assert sum(r["instruction_mix"].values()) == r["instructions_per_invoke"]
    assert r["instruction_mix"]["mul"] > 0 and r["instruction_mix"]["load"] > 0
    assert r["ms_per_invoke"] == round(1000 * r["cycles_per_invoke"] / load_board(board).clock_hz, 3)
    # the emulator's painted stack (invoke alone) and the QEMU harness's (main + init + invoke)
    # measure the same deepest call chain
    assert abs(r["stack_used"] - r["stack_used_qemu"]) <= 128


@pytest.mark.parametrize("board", ["cortex-m4", "rp2040"])
def test_ad01_flash_pair_tables_bit_exact_in_qemu(tmp_path, board):
    """ad01 at 4 bits takes FULLY_CONNECTED's flash pair tables (its 768 B arena has no room for
    the run-time ones): the DSP path that reads them (Cortex-M4) and ARMv6-M, which ignores them,
    both give the host's bytes in QEMU and in the instruction counter."""
    require_tool("arm-none-eabi-gcc")
    require_tool("qemu-system-arm")
    from tinycluster.builders.board import run_on_board
    d = _compile(shared_model("ad01_int8.tflite"), tmp_path / "ad01")
    assert json.loads((d / "report.json").read_text())["totals"]["flash_table_bytes"] > 0
    r = run_on_board(d, board, samples=3, seed=5, count=1)
    assert json.loads((d / "run.json").read_text())["mismatches"] == 0
    assert r["counter"]["mismatches"] == 0


@pytest.fixture(scope="module")
def compiled_4bit(tmp_path_factory):
    """Shared models compiled at 4 bits once per module, by name."""
    done = {}

    def get(model):
        if model not in done:
            done[model] = _compile(shared_model(f"{model}.tflite"), tmp_path_factory.mktemp("boards") / model)
        return done[model]
    return get


@pytest.mark.parametrize("board", ["cortex-m4", "rp2040"])
@pytest.mark.parametrize("model, op", [("pretrainedResnet_quant", "ADD"), ("vww_96_int8", "DEPTHWISE_CONV_2D")])
def test_shared_model_bit_exact_in_qemu(compiled_4bit, tmp_path, board, model, op):
    """ResNet-8 (residual ADDs, packed 3x3 and 1x1 convolutions, FULLY_CONNECTED, SOFTMAX) and vww (the
    largest shared model: depthwise and pointwise convolutions) at 4 bits give the host's bytes in QEMU,
    on the DSP path (Cortex-M4) and on ARMv6-M (RP2040). kws and ad01 run in the tests above."""
    require_tool("arm-none-eabi-gcc")
    require_tool("qemu-system-arm")
    from tinycluster.builders.board import run_on_board
    d = _copy(compiled_4bit(model), tmp_path / model)
    assert any(n["op"] == op for n in json.loads((d / "report.json").read_text())["layers"])
    r = run_on_board(d, board, samples=2, seed=7, count=0)
    assert r["mismatches"] == 0 and r["samples"] == 2


def test_run_reports_mismatch(kws_dir, tmp_path, monkeypatch):
    """If the host reference differs, run fails and says how many samples differ."""
    require_tool("arm-none-eabi-gcc")
    require_tool("qemu-system-arm")
    import tinycluster.builders.board as tb
    real = tb.host_outputs

    def off_by_one(model, inputs):
        out = real(model, inputs)
        out[1, 0] ^= 1
        return out

    monkeypatch.setattr(tb, "host_outputs", off_by_one)
    d = _copy(kws_dir, tmp_path / "kws")
    with pytest.raises(TinyClusterError, match="1 of 3 samples differ"):
        tb.run_on_board(d, "cortex-m4", samples=3, count=0)
    r = json.loads((d / "run.json").read_text())
    assert r["mismatches"] == 1 and r["mismatched_samples"] == [1]


def test_instruction_count_is_exact_on_armv6m(kws_dir, tmp_path):
    """ARMv6-M has no IT blocks: the block-hook count must equal unicorn's own instruction limit."""
    require_tool("arm-none-eabi-gcc")
    from tinycluster.builders.board import build_run_image
    from tinycluster.builders.icount import verify_count
    d = _copy(kws_dir, tmp_path / "kws")
    elf, model, _ = build_run_image(d, "rp2040", samples=1)
    n, returns_at_n, returns_at_n_minus_1 = verify_count(elf, model.name, load_board("rp2040"))
    assert n > model.macs
    assert returns_at_n and not returns_at_n_minus_1


# ---------------------------------------------------------------------------------------------
# firmware project output
# ---------------------------------------------------------------------------------------------
def _cmake_commands(text):
    """(command, args) in order, comments stripped."""
    text = re.sub(r"#[^\n]*", "", text)
    return [(m.group(1).lower(), " ".join(m.group(2).split())) for m in re.finditer(r"(\w+)\s*\(([^)]*)\)", text)]


def test_pico_sdk_project_structure(kws_rp2040_dir):
    fw = kws_rp2040_dir / "firmware"
    name = "kws_ref_model"
    cmds = _cmake_commands((fw / "CMakeLists.txt").read_text())
    names = [c for c, _ in cmds]
    order = ["cmake_minimum_required", "include", "project", "pico_sdk_init", "add_subdirectory",
             "add_executable", "target_link_libraries", "pico_add_extra_outputs"]
    pos = [names.index(c) for c in order]
    assert pos == sorted(pos), names
    args = dict(cmds)
    assert args["include"] == "pico_sdk_import.cmake"
    assert args["add_subdirectory"] == name
    assert args["add_executable"] == f"{name}_example main.c"
    assert set(args["target_link_libraries"].split()) == {f"{name}_example", "pico_stdlib", name}
    assert args["pico_add_extra_outputs"] == f"{name}_example"
    imp = (fw / "pico_sdk_import.cmake").read_text()
    assert "PICO_SDK_PATH" in imp and "pico_sdk_init.cmake" in imp
    # the library target the Pico project adds
    lib = fw / name
    lcmds = dict(_cmake_commands((lib / "CMakeLists.txt").read_text()))
    assert lcmds["add_library"].startswith(f"{name} STATIC")
    assert (lib / "src" / f"{name}.c").read_text() == (kws_rp2040_dir / f"{name}.c").read_text()
    # the library's runtime is the output folder's runtime copy, byte for byte
    runtime = {p.name: p.read_bytes() for p in (lib / "src" / "runtime").glob("tc_*")}
    assert runtime and runtime == {p.name: p.read_bytes() for p in (kws_rp2040_dir / "runtime").glob("tc_*")}
    assert "tc_conv2d_packed.c" in runtime and "tc_common.h" in runtime
    main = (fw / "main.c").read_text()
    assert '#include "pico/stdlib.h"' in main and "stdio_init_all()" in main
    assert f"{name}_init();" in main and f"{name}_invoke(input, output)" in main and "class %d" in main
    # Arduino + PlatformIO
    props = dict(ln.split("=", 1) for ln in (lib / "library.properties").read_text().splitlines() if "=" in ln)
    assert props["name"] == name and props["includes"] == f"{name}.h"
    pio = json.loads((lib / "library.json").read_text())
    assert pio["name"] == name and pio["build"]["srcDir"] == "src"
    assert (lib / "examples" / f"{name}_example" / f"{name}_example.ino").exists()


def test_firmware_for_generic_board_compiles(kws_dir, tmp_path):
    """The non-Pico layout: toolchain file + plain CMake; main.c and the library cross-compile."""
    require_tool("arm-none-eabi-gcc")
    from tinycluster.builders.firmware import write_firmware_project
    d = _copy(kws_dir, tmp_path / "kws")
    written = write_firmware_project(d, "cortex-m4")
    fw = d / "firmware"
    assert fw / "CMakeLists.txt" in written and not (fw / "pico_sdk_import.cmake").exists()
    tc = (fw / "toolchain-cortex-m4.cmake").read_text()
    assert "-mcpu=cortex-m4" in tc and "arm-none-eabi-gcc" in tc
    assert "pico" not in (fw / "main.c").read_text()
    b = load_board("cortex-m4")
    src = fw / "kws_ref_model" / "src"
    r = subprocess.run(["arm-none-eabi-gcc", *b.cflags, "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{src}",
                        "-c", str(fw / "main.c"), "-o", str(tmp_path / "main.o")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    require_tool("cmake")  # .ci/run and `make test` install it; in CI its absence fails
    bd = tmp_path / "cmake-build"
    r = subprocess.run(["cmake", "-S", str(fw), "-B", str(bd), "-DCMAKE_TOOLCHAIN_FILE=" + str(fw / "toolchain-cortex-m4.cmake"),
                        "-DCMAKE_BUILD_TYPE=Release"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["cmake", "--build", str(bd), "--target", "kws_ref_model"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert list(bd.rglob("libkws_ref_model.a"))


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def test_cli_build_and_errors(kws_dir, tmp_path):
    require_tool("arm-none-eabi-gcc")
    from tinycluster.cli_board import build, run
    d = _copy(kws_dir, tmp_path / "kws")
    res = CliRunner().invoke(build, [str(d), "--board", "cortex-m0plus"])
    assert res.exit_code == 0, res.output
    assert "flash" in res.output and "SRAM" in res.output and "index arrays in flash" in res.output
    res = CliRunner().invoke(build, [str(d), "--board", "nope"])
    assert res.exit_code == 1 and "unknown board 'nope'" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(build, [str(tmp_path / "missing"), "--board", "rp2040"])
    assert res.exit_code == 1 and "not a folder" in res.output
    res = CliRunner().invoke(run, [str(d), "--board", "rp2040", "--samples", "0"])
    assert res.exit_code == 1 and "--samples" in res.output
