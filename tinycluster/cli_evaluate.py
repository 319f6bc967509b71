"""`tinycluster evaluate OUT_DIR --data test.npz`: accuracy of a compiled model (added to the CLI group)."""
from __future__ import annotations

import click


@click.command("evaluate")
@click.argument("out_dir", type=click.Path(path_type=str))
@click.option("--data", "data", required=True, type=click.Path(path_type=str),
              help=".npz with float inputs 'x' (the model's input shape) and integer labels 'y'")
@click.option("--reference", type=click.Choice(["tflm", "litert-ref"]), default="tflm", show_default=True,
              help="interpreter for the int8 models: TFLite Micro (bit-exact reference) or LiteRT reference kernels")
@click.option("--max-samples", type=int, default=None, help="evaluate on the first N samples only")
@click.option("--no-plots", is_flag=True, help="skip the PNG plots")
def evaluate(out_dir, data, reference, max_samples, no_plots):
    """Float, int8 and clustered accuracy, top-1 agreement, output SNR and bits/weight of OUT_DIR's model;
    appends them to report.md / report.json and draws weight-histogram and bytes-per-layer plots."""
    from .errors import TinyClusterError
    from .evaluate import evaluate as run_evaluate

    if max_samples is not None and max_samples <= 0:
        raise TinyClusterError("--max-samples must be a positive number")
    run_evaluate(out_dir, data, reference=reference, max_samples=max_samples, plots=not no_plots)
