"""CLI commands for boards: ``tinycluster build DIR --board B`` and ``tinycluster run DIR --board B``.

Registered on the main group by ``tinycluster/cli.py`` (``cli.add_command``). User errors are
raised as one-line ``click.ClickException``s (exit 1), never tracebacks.
"""
from __future__ import annotations

import functools

import click

from .errors import TinyClusterError


def _one_line_errors(f):
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except TinyClusterError as e:
            raise click.ClickException(" ".join(str(e).split("\n"))) from None
    return wrapper


def _board_help() -> str:
    try:
        from .boards import available_boards
        return "board profile: " + ", ".join(available_boards()) + " (or the path of a .toml profile)"
    except Exception:  # pragma: no cover
        return "board profile name or .toml path"


@click.command("build")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--board", "-b", required=True, help=_board_help())
@click.option("--json", "as_json", is_flag=True, help="print build.json instead of the summary")
@_one_line_errors
def build(out_dir, board, as_json):
    """Cross-compile a compile output folder for a board; report flash/SRAM use against it.

    Writes OUT_DIR/build.json; exits non-zero when the model does not fit or the placement check fails.
    """
    import json

    from .builders.board import build_for_board, format_build

    r = build_for_board(out_dir, board)
    click.echo(json.dumps(r, indent=2) if as_json else format_build(r))


@click.command("run")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--board", "-b", required=True, help=_board_help())
@click.option("--samples", "-n", default=20, show_default=True, type=int, help="seeded int8 inputs to run")
@click.option("--seed", default=0, show_default=True, type=int, help="numpy seed of the inputs")
@click.option("--count", "count", default=3, show_default=True, type=int,
              help="samples to run through the unicorn instruction counter (0: skip counting)")
@click.option("--timeout", default=300.0, show_default=True, type=float, help="seconds before QEMU is stopped")
@click.option("--json", "as_json", is_flag=True, help="print run.json instead of the summary")
@_one_line_errors
def run(out_dir, board, samples, seed, count, timeout, as_json):
    """Run a compile output folder on a board's QEMU machine, compare with the host build, count instructions.

    Writes OUT_DIR/run.json; exits non-zero on any output mismatch.
    """
    import json

    from .builders.board import format_run, run_on_board

    if samples < 1:
        raise TinyClusterError("--samples must be at least 1")
    if count < 0:
        raise TinyClusterError("--count must be >= 0")
    r = run_on_board(out_dir, board, samples, seed=seed, timeout=timeout, count=count)
    click.echo(json.dumps(r, indent=2) if as_json else format_run(r))
