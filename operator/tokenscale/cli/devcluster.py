"""``tokenscale dev-cluster up | down | env | status``: the local control plane for development and the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tokenscale.devcluster import binaries, cluster, layout, nodes

__all__ = ["app"]

app = typer.Typer(
    help="A real local control plane on 127.0.0.1 (etcd, kube-apiserver, kube-controller-manager, "
    "kube-scheduler, KWOK with fake GPU nodes). See docs/testcluster.md.",
    no_args_is_help=True,
)

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="Directory of the cluster (state, kubeconfig, logs). Default: ~/.cache/tokenscale/dev-cluster.",
    ),
]


def _home(home: Path | None) -> Path:
    return home if home is not None else layout.default_home()


@app.command("up")
def up(
    node_count: Annotated[int, typer.Option("--nodes", min=1, max=250, help="Fake GPU nodes.")] = 4,
    gpu_product: Annotated[str, typer.Option(help="Value of the nvidia.com/gpu.product node label.")] = (
        "NVIDIA-H100-80GB-HBM3"
    ),
    gpus_per_node: Annotated[int, typer.Option(min=0, help="nvidia.com/gpu capacity of each node.")] = 8,
    timeout_seconds: Annotated[float, typer.Option(help="Give up if not Ready after this long.")] = 180.0,
    home: HomeOption = None,
) -> None:
    """Start the cluster in the background and return once it is Ready."""
    fake_nodes = nodes.fake_gpu_nodes(node_count, gpu_product=gpu_product, gpus_per_node=gpus_per_node)
    try:
        started = cluster.start_cluster(home=_home(home), fake_nodes=fake_nodes, timeout_seconds=timeout_seconds)
    except (
        cluster.ClusterRunningError,
        cluster.ClusterBusyError,
        cluster.ClusterStartError,
        binaries.BinariesMissingError,
    ) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    state = started.state
    typer.echo(
        f"dev cluster Ready in {state.timings_seconds['ready']:.1f} s: {node_count} fake nodes with "
        f"{gpus_per_node}x {gpu_product}, API server {state.server_url}\n"
        f"\n"
        f'  export KUBECONFIG={state.kubeconfig}     # or: eval "$(tokenscale dev-cluster env)"\n'
        f"  kubectl get nodes -L {nodes.GPU_PRODUCT_LABEL},{nodes.ZONE_LABEL}\n"
        f"\n"
        f"kubectl, helm and the other binaries: {started.binaries.directory}\n"
        f"component logs: {started.layout.logs_dir}\n"
        f"stop it with: tokenscale dev-cluster down"
    )


@app.command("down")
def down(home: HomeOption = None) -> None:
    """Stop the cluster (its processes, by PID, in reverse start order). Logs are kept until the next up."""
    try:
        stopped = cluster.stop_cluster(_home(home))
    except cluster.ClusterBusyError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo("dev cluster stopped" if stopped else f"no dev cluster in {_home(home)}")


@app.command("env")
def env(home: HomeOption = None) -> None:
    """Print the shell line that points kubectl (and everything else) at the cluster."""
    running = cluster.attach_cluster(_home(home))
    if running is None:
        typer.echo(f"no dev cluster runs in {_home(home)}; start one with: tokenscale dev-cluster up", err=True)
        raise typer.Exit(1)
    typer.echo(f"export KUBECONFIG={running.kubeconfig}")


@app.command("status")
def status(home: HomeOption = None) -> None:
    """Show whether the cluster runs, its components, PIDs, ports and logs."""
    running = cluster.attach_cluster(_home(home))
    if running is None:
        typer.echo(f"no dev cluster runs in {_home(home)}")
        raise typer.Exit(1)
    gone = set(running.not_running())
    typer.echo(f"API server {running.server_url}, kubeconfig {running.kubeconfig}")
    for process in running.state.processes:
        typer.echo(f"  {process.name:<24} pid {process.pid:<8} {'EXITED' if process.name in gone else 'running'}")
    typer.echo(f"logs: {running.layout.logs_dir}")
