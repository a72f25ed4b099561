"""``tokenscale simulate``: replay traces through the simulated PD cluster under each policy and score them.

Runs every (trace, profile, policy) combination, prints the scoreboard, and optionally writes the stable JSON
(docs/simulator.md), a Markdown table and PNG plots.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from tokenscale.api import profiles
from tokenscale.sim import loop, scoreboard, traces
from tokenscale.sim import plots as sim_plots

__all__ = ["simulate"]


def _policies(spec: str) -> list[str]:
    valid = scoreboard.scoreboard_policy_names()
    names = list(valid) if spec.strip() == "all" else [p.strip() for p in spec.split(",") if p.strip()]
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise typer.BadParameter(f"unknown policy {', '.join(unknown) or spec!r}; valid: all, {', '.join(valid)}")
    return names


def _run(scenario: scoreboard.Scenario, policy: str) -> tuple[scoreboard.RunRecord, loop.RunOutcome]:
    return scoreboard.run_one(scenario, policy)


def _table(records: Sequence[scoreboard.RunRecord]) -> Table:
    table = Table(title="policy scoreboard", show_lines=False)
    for column, justify in (
        ("trace", "left"),
        ("profile", "left"),
        ("policy", "left"),
        ("SLO", "right"),
        ("TTFT ok", "right"),
        ("TPOT ok", "right"),
        ("TTFT p50/p99 ms", "right"),
        ("TPOT p50/p99 ms", "right"),
        ("GPU-h", "right"),
        ("× oracle", "right"),
        ("scale out/in", "right"),
        ("conversions", "right"),
    ):
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]

    def ms(value: float | None) -> str:
        return "–" if value is None else f"{1000 * value:,.0f}"

    for r in records:
        table.add_row(
            f"{r.trace} ×{r.rate_scale:g}",
            r.profile,
            r.policy,
            f"{100 * r.slo_attainment:.1f}%",
            f"{100 * r.ttft_attainment:.1f}%",
            f"{100 * r.tpot_attainment:.1f}%",
            f"{ms(r.ttft_p50_seconds)}/{ms(r.ttft_p99_seconds)}",
            f"{ms(r.tpot_p50_seconds)}/{ms(r.tpot_p99_seconds)}",
            f"{r.gpu_hours:.2f}",
            f"{r.cost_vs_oracle:.2f}",
            f"{r.scale_out_events}/{r.scale_in_events}",
            str(r.conversions),
        )
    return table


def simulate(
    *,
    trace: Annotated[
        list[str], typer.Option("--trace", help="Bundled trace (azure-code, azure-conv) or CSV/JSONL path; repeat.")
    ],
    profile: Annotated[
        list[str],
        typer.Option("--profile", help="Bundled profile name or YAML path; repeat. Default: llama-3.1-8b-h100."),
    ] = ["llama-3.1-8b-h100"],  # noqa: B006 - typer needs a literal default for a repeated option
    policy: Annotated[
        str, typer.Option("--policy", help="Comma-separated policy names, 'oracle' (replay), or 'all'.")
    ] = "tokenscale",
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the runs as JSON (docs/simulator.md).")
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option("--markdown", help="Write the scoreboard as a Markdown table.")
    ] = None,
    plots: Annotated[Path | None, typer.Option("--plots", help="Write PNG plots into this folder.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the rate scaling.")] = 0,
    rate_scale: Annotated[
        float, typer.Option("--rate-scale", min=0.001, help="Multiply the request rate (same span, same bursts).")
    ] = 1.0,
    duration: Annotated[
        float | None, typer.Option("--duration", min=1.0, help="Use only the first S seconds of each trace.")
    ] = None,
    cold_start: Annotated[
        float | None, typer.Option("--cold-start", min=0.0, help="Cold start seconds; default: the profile's.")
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="Runs in parallel processes.")] = 1,
    oracle_target: Annotated[
        float,
        typer.Option("--oracle-target", min=0.01, max=1.0, help="SLO attainment the oracle's plan must reach (0-1)."),
    ] = 0.95,
) -> None:
    """Replay traces through the simulated PD cluster under each policy; print the scoreboard."""
    console = Console(stderr=True)
    names = _policies(policy)
    try:
        loaded_profiles = [profiles.load_profile(p) for p in profile]
        loaded_traces = [(t, traces.load_trace(t)) for t in trace]
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    scenarios = [
        scoreboard.Scenario.prepare(
            trace_name=name,
            trace=data,
            profile=prof,
            rate_scale=rate_scale,
            seed=seed,
            duration_seconds=duration,
            cold_start_seconds=cold_start,
            oracle_target=oracle_target,
        )
        for name, data in loaded_traces
        for prof in loaded_profiles
    ]
    with console.status("searching the oracle's plans (and goodputs)"):
        for scenario in scenarios:
            _ = scenario.oracle  # once per scenario, here rather than in each worker
            if any(name in scoreboard.GOODPUT_POLICIES for name in names):
                _ = scenario.distserve  # per-instance goodputs by simulation
    jobs_list = [(scenario, name) for scenario in scenarios for name in names]
    results: list[tuple[scoreboard.RunRecord, loop.RunOutcome]] = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        overall = progress.add_task("runs", total=len(jobs_list))
        if jobs == 1:
            for scenario, name in jobs_list:
                horizon = scenario.trace.span_seconds
                task = progress.add_task(f"{scenario.trace_name} {scenario.profile.name} {name}", total=horizon)

                def tick(now: float, task_id: TaskID = task, horizon: float = horizon) -> None:
                    progress.update(task_id, completed=min(now, horizon))

                results.append(scoreboard.run_one(scenario, name, on_tick=tick))
                progress.remove_task(task)
                progress.advance(overall)
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = [pool.submit(_run, scenario, name) for scenario, name in jobs_list]
                for future in futures:
                    results.append(future.result())
                    progress.advance(overall)

    records = [record for record, _ in results]
    # A pipe or a log gets the whole table rather than columns squeezed to 80 characters.
    Console(width=None if sys.stdout.isatty() else 200).print(_table(records))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(scoreboard.runs_json(records))
        console.print(f"wrote {json_path}")
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(scoreboard.markdown_table(records))
        console.print(f"wrote {markdown}")
    if plots is not None:
        try:
            for scenario in scenarios:
                runs = [
                    (r, o) for r, o in results if r.trace == scenario.trace_name and r.profile == scenario.profile.name
                ]
                for path in sim_plots.write_plots(scenario=scenario, runs=runs, directory=plots):
                    console.print(f"wrote {path}")
        except sim_plots.PlotsUnavailableError as error:
            console.print(f"[red]{error}[/red]")
            raise typer.Exit(2) from error
