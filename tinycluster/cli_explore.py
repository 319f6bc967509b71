"""`tinycluster explore MODEL -o DIR`: the Pareto table of widths x layouts x budgets (added to the CLI group)."""
from __future__ import annotations

import click

from .errors import TinyClusterError


def _int_list(text, what):
    """'2,3,4' or '2-6' or '2-4,8' -> sorted ints."""
    out = set()
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                out.update(range(int(a), int(b) + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise TinyClusterError(f"{what} {text}: write index widths like 2,3,4 or 2-6") from None
    if not out:
        raise TinyClusterError(f"{what} {text}: no index width given")
    return sorted(out)


@click.command("explore")
@click.argument("model", type=click.Path(dir_okay=True, path_type=str))
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=str), help="output folder")
@click.option("--calib", default=None, help=".npy/.npz of representative inputs (float real values or int8); half "
                                             "calibrates, the other half is held out for the evaluation")
@click.option("--eval", "eval_data", default=None, help="evaluate on these inputs instead of the held-out half of --calib")
@click.option("--bits", "bits", default="1-8", show_default=True, help="index widths to sweep, e.g. 2,3,4 or 2-6")
@click.option("--layouts", default=None, help="codebook layouts to sweep, comma-separated (default: every "
                                              "--granularity compile accepts)")
@click.option("--no-lossless", is_flag=True, help="skip the --lossless points")
@click.option("--flash-budget", "budgets", multiple=True, help="also sweep this flash budget (repeatable; "
              "default: the flash of the default layout's 3 and 4 bit points, where the model's path supports budgets)")
@click.option("--no-budgets", is_flag=True, help="no flash-budget points")
@click.option("--samples", type=int, default=200, show_default=True, help="evaluation inputs (at most)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--board", default=None, help="board profile for every point (codebook placement changes SRAM)")
@click.option("--quiet", is_flag=True, help="no progress bar")
def explore(model, output, calib, eval_data, bits, layouts, no_lossless, budgets, no_budgets, samples, seed, board,
            quiet):
    """Sweep index widths, codebook layouts and flash budgets on MODEL; write a Pareto table (flash, SRAM, output
    SNR and top-1 agreement vs the int8 model) as explore.md/explore.json and a plot, marking compile's default."""
    from .api import check_output_dir
    from .cli import _command_line
    from .explore import MARKER, explore as run_explore, layouts as all_layouts, write

    if no_budgets and budgets:
        raise TinyClusterError("give either --flash-budget or --no-budgets, not both")
    names = None
    if layouts is not None:
        names = [n for n in layouts.replace(" ", "").split(",") if n]
        bad = [n for n in names if n not in all_layouts()]
        if bad or not names:
            raise TinyClusterError(f"--layouts {layouts}: use some of {', '.join(all_layouts())}")
    check_output_dir(output, MARKER)  # before minutes of work, not after
    res = run_explore(model, calib=calib, eval_data=eval_data, bits=_int_list(bits, "--bits"), layout_names=names,
                      lossless=not no_lossless, budgets=None if no_budgets else (list(budgets) or "auto"),
                      samples=samples, seed=seed, board=board, quiet=quiet, command=_command_line())
    out, note = write(res, output)
    front = [p for p in res["points"] if p["pareto"]]
    click.echo(f"wrote {out}/explore.md, explore.json" + ("" if note else ", explore.png") +
               f": {len(res['points'])} points, {len(front)} on the Pareto front, in {res['seconds']} s")
    click.echo(f"evaluation inputs: {res['evaluation']['inputs']}")
    for n in res["notes"]:
        click.echo(f"note: {n}")
    if note:
        click.echo(f"note: {note}")
