"""Command line: `tinycluster compile | verify | build | run | evaluate | explore`."""
from __future__ import annotations

import shlex
import sys

import click

from . import __version__
from .errors import TinyClusterError


def _command_line():
    return "tinycluster " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _parse_bytes(s):
    if s is None:
        return None
    t = str(s).strip().lower().replace(" ", "")
    mult = 1
    for suf, m in (("kib", 1024), ("kb", 1000), ("mib", 1 << 20), ("mb", 1000000), ("k", 1024), ("b", 1)):
        if t.endswith(suf):
            t, mult = t[: -len(suf)], m
            break
    try:
        return int(float(t) * mult)
    except ValueError:
        raise TinyClusterError(f"--flash-budget {s}: not a size (examples: 24576, 24KiB, 0.5MiB)") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tinycluster")
def cli():
    """tinycluster: weight-clustered neural networks as plain C99 for microcontrollers."""


@cli.command("compile")
@click.argument("model", type=click.Path(dir_okay=True, path_type=str))
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=str), help="output folder")
@click.option("--name", default=None, help="C identifier prefix (default: from the model file name)")
@click.option("--bits", type=int, default=None, help="index width 1..8 (k = 2^bits clusters); default 4")
@click.option("--clusters", type=int, default=None, help="k clusters, 2..256 (index width ceil(log2 k))")
@click.option("--lossless", is_flag=True, help="per layer, the smallest index width that keeps every weight exact")
@click.option("--granularity", type=click.Choice(["per-channel", "per-tensor", "normalized", "auto"]), default="auto",
              show_default=True, help="codebook layout: one per output channel, one per tensor, one per tensor in each "
                                      "channel's normalized domain (new per-channel scales), or auto: per layer, "
                                      "chosen by output error per byte (docs/clustering.md)")
@click.option("--codebooks", type=click.Choice(["sram", "flash"]), default=None,
              help="where codebooks live at run time (default: board profile, else sram)")
@click.option("--board", default=None, help="board profile (boards/*.toml); also writes firmware project files")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--calib", default=None, help=".npy/.npz of representative inputs (N, *input shape): float in the model's "
                                           "real input range, or int8 already quantized (int8 models); int8 models "
                                           "then get codebooks chosen by each layer's output error")
@click.option("--calib-random", type=int, default=None, help="N random calibration inputs (smoke runs only)")
@click.option("--prune", type=float, default=None, help="Keras/float models: target sparsity 0..1 before clustering")
@click.option("--prune-structured", is_flag=True, help="prune whole output channels")
@click.option("--method", type=click.Choice(["kmeans", "tfmot", "uniform"]), default="kmeans", show_default=True)
@click.option("--heal", default=None, help="Keras models: .npz (x, y) to fine-tune the centroids on")
@click.option("--heal-epochs", type=int, default=1, show_default=True)
@click.option("--flash-budget", default=None, help="per-layer bits chosen to fit this many bytes (e.g. 24KiB)")
@click.option("--mean-bits", type=float, default=None, help="per-layer bits chosen for this mean index width")
@click.option("--weight-dtype", type=click.Choice(["int8", "int4"]), default="int8", show_default=True)
@click.option("--flash-tables", type=float, default=5.0, show_default=True,
              help="flash for FULLY_CONNECTED's precomputed pair tables (Cortex-M4/M7/M33 speed where the arena "
                   "has no room for them), in %% of the model's index bytes; 0: none")
@click.option("--quiet", is_flag=True, help="no progress bars")
def compile_cmd(model, output, name, bits, clusters, lossless, granularity, codebooks, board, seed, calib,
                calib_random, prune, prune_structured, method, heal, heal_epochs, flash_budget, mean_bits,
                weight_dtype, flash_tables, quiet):
    """Compile MODEL (.tflite int8/float, .keras, .h5, SavedModel) into C sources plus a report."""
    from .api import compile as tc_compile

    frontend = {k: v for k, v in dict(
        calib=calib, calib_random=calib_random, prune=prune, prune_structured=prune_structured or None,
        method=None if method == "kmeans" else method, heal=heal,
        heal_epochs=heal_epochs if heal else None, flash_budget=_parse_bytes(flash_budget),
        mean_bits=mean_bits, weight_dtype=None if weight_dtype == "int8" else weight_dtype,
        granularity=None).items() if v is not None}
    m = tc_compile(model, bits=bits, clusters=clusters, lossless=lossless, granularity=granularity, name=name,
                   codebooks=codebooks, board=board, seed=seed, command=_command_line(), frontend=frontend,
                   flash_tables=flash_tables, quiet=quiet)
    out = m.write(output)
    t = m.report["totals"]
    click.echo(f"wrote {out}/{m.name}.c, {m.name}.h, runtime/ (the C runtime it needs), {m.name}_selftest.c, "
               f"report.md, report.json, {m.name}_clustered.tflite")
    click.echo(f"flash {t['flash_bytes']:,} B (int8 baseline {t['int8_weight_bytes']:,} B), "
               f"SRAM {t['sram_bytes']:,} B (arena {t['arena_bytes']:,} B, codebooks in SRAM {t['codebook_sram_bytes']:,} B), "
               f"{t['weights']:,} weights at {t['bits_per_weight']} bits/weight")
    method = m.report.get("clustering", {}).get("method", "")
    if method:
        click.echo(f"codebooks chosen by: {method}")
    if method.startswith("data-free") and "frontend" not in m.report:
        click.echo("hint: --calib FILE (.npy/.npz of representative inputs) lets tinycluster choose the codebooks by "
                   "each layer's output error on your data and correct the biases; usually far more faithful at "
                   "4 bits and below")


@cli.command("verify")
@click.argument("out_dir", type=click.Path(path_type=str))
@click.option("--samples", type=int, default=200, show_default=True, help="random inputs (plus min, max, zero point)")
@click.option("--seed", type=int, default=0, show_default=True)
def verify_cmd(out_dir, samples, seed):
    """Check the generated C against the TFLite Micro interpreter, byte for byte."""
    from .verify import verify

    if samples < 0:
        raise TinyClusterError("--samples must be >= 0")
    r = verify(out_dir, samples=samples, seed=seed)
    click.echo(f"{r['samples']} inputs: {r['mismatches']} mismatching outputs (reference: TFLite Micro); "
               f"invoke median host C {r['host_invoke_us']} us vs TFLM {r['tflm_invoke_us']} us ({r['speedup']}x)")
    if r["mismatches"]:
        raise TinyClusterError(f"{r['mismatches']} of {r['samples']} outputs differ from TFLite Micro "
                               f"(max |diff| {r['max_abs_diff']}); see {out_dir}/verify.json")


def _add_optional_commands():
    try:
        from .cli_board import build as build_cmd, run as run_cmd

        cli.add_command(build_cmd, "build")
        cli.add_command(run_cmd, "run")
    except ImportError:
        pass
    try:
        from .cli_evaluate import evaluate as evaluate_cmd

        cli.add_command(evaluate_cmd, "evaluate")
    except ImportError:
        pass


_add_optional_commands()


def _add_explore():
    from .cli_explore import explore as explore_cmd

    cli.add_command(explore_cmd, "explore")


_add_explore()


def _quiet_tensorflow():
    """TensorFlow's C++ start-up chatter on stderr would bury our one-line errors."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")


def main(argv=None):
    _quiet_tensorflow()
    try:
        cli.main(args=argv, prog_name="tinycluster", standalone_mode=False)
    except TinyClusterError as e:
        import os

        if os.environ.get("TINYCLUSTER_DEBUG") and e.__cause__ is not None:
            import traceback

            traceback.print_exception(e.__cause__)
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # last resort: a bug in tinycluster, still no raw traceback
        import os
        import traceback

        if os.environ.get("TINYCLUSTER_DEBUG"):
            traceback.print_exc()
        click.echo(f"internal error: {type(e).__name__}: {e} (set TINYCLUSTER_DEBUG=1 for a traceback, "
                   "and please report it)", err=True)
        sys.exit(2)
    sys.exit(0)


if __name__ == "__main__":
    main()
