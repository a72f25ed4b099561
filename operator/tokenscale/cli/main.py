"""``tokenscale``: the command line. Each command group lives in its own module and registers here."""

from __future__ import annotations

import typer

from tokenscale.api import crdgen
from tokenscale.cli import demo, devcluster, generate, metrics, run, simulate, twin

app = typer.Typer(
    name="tokenscale",
    help="Autoscale prefill/decode disaggregated LLM serving with Token Velocity.",
    no_args_is_help=True,
    add_completion=False,
)


app.command("generate")(generate.generate)
app.command("run")(run.run)
app.add_typer(devcluster.app, name="dev-cluster")
app.add_typer(metrics.app, name="metrics")
app.command("simulate")(simulate.simulate)
app.command("twin")(twin.twin)
app.command("demo")(demo.demo)


@app.command("crd")
def print_crd() -> None:
    """Print the DisaggregatedInferenceService CustomResourceDefinition (YAML) to stdout."""
    typer.echo(crdgen.crd_yaml(), nl=False)


@app.callback()
def main() -> None:
    """tokenscale: an operator, a simulator and a twin for prefill/decode disaggregated serving."""
