"""The demo's live terminal view (rich): one `DemoFrame` rendered as panels, in simulated units.

- per stage: tokens/s arriving (the twin's truth, and the operator's estimate from the metrics) against the Ready
  capacity the operator computes; replicas desired (the last decision) and Ready / starting / draining pods;
- converted decoders, queues, SLO attainment so far (decided requests; pending ones counted apart);
- the recent decisions (the service's status) and what the twin saw happen to pods.
"""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tokenscale.demo.session import DemoFrame, DemoOptions

__all__ = ["render_frame"]


def _rate(value: float) -> str:
    return f"{value / 1000:,.1f}k" if value >= 1000 else f"{value:,.0f}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _stages(frame: DemoFrame) -> Table:
    twin = frame.twin
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True)
    for column in ("tokens/s", "arriving", "op. est.", "capacity", "desired", "ready", "start", "drain"):
        table.add_column(column, justify="left" if column == "tokens/s" else "right", no_wrap=True)
    prefill_over = twin.arriving_prompt_tokens_per_second > frame.prefill_capacity_tokens_per_second > 0
    table.add_row(
        "prefill",  # prompt tokens
        Text(_rate(twin.arriving_prompt_tokens_per_second), style="bold red" if prefill_over else ""),
        _rate(frame.operator_arriving_prompt_tokens_per_second),
        _rate(frame.prefill_capacity_tokens_per_second),
        str(frame.prefill_desired),
        str(twin.prefill.ready),
        str(twin.prefill.starting),
        str(twin.prefill.draining),
    )
    table.add_row(
        "decode",  # KV tokens (input + output) of the requests
        _rate(twin.arriving_decode_tokens_per_second),
        _rate(frame.operator_arriving_decode_tokens_per_second),
        _rate(frame.decode_capacity_tokens_per_second),
        str(frame.decode_desired),
        str(twin.decode.ready),
        str(twin.decode.starting),
        str(twin.decode.draining),
    )
    return table


def _summary(frame: DemoFrame) -> Table:
    twin, slo = frame.twin, frame.twin.slo
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    converted = ", ".join(pod.rsplit("-", 1)[-1] for pod in frame.converted_pods)
    withdrawn = f"; {twin.withdrawn} withdrawn" if twin.withdrawn else ""
    table.add_row(
        "converted",
        f"{twin.converted} decoder(s){f' ({converted})' if converted else ''}{withdrawn}; queued: prefill "
        f"{twin.prefill_queue}, decode {twin.decode_queue}",
    )
    table.add_row(
        "SLO so far",
        f"{_percent(slo.attainment)} ({slo.attained} of {slo.decided} decided, {slo.pending} pending) · "
        f"{twin.gpu_seconds / 3600:.2f} GPU-h",
    )
    unhealthy = [
        f"{kind} {value}"
        for kind, value in frame.conditions.items()
        if kind != "ScalingLimited" and value.split("/")[0] != ("False" if kind == "ScalingConflict" else "True")
    ]
    if unhealthy:
        table.add_row("conditions", Text(", ".join(unhealthy), style="yellow"))
    return table


def _activity(frame: DemoFrame) -> Table:
    table = Table(expand=True, box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("t (s)", justify="right", no_wrap=True, min_width=5)
    table.add_column("decision (status) / pod event (twin)", no_wrap=True, min_width=24)
    table.add_column("reason / pod", overflow="ellipsis", no_wrap=True, ratio=1)
    rows: list[tuple[float, str, str]] = [
        (d.simulated_seconds, f"{d.action} → P {d.prefill_replicas} D {d.decode_replicas}", d.reason)
        for d in frame.recent_decisions
    ]
    rows += [(e.simulated_seconds, f"{e.role.value} pod {e.kind}", e.pod) for e in frame.recent_events]
    for seconds, what, detail in sorted(rows)[-6:]:
        table.add_row(f"{seconds:,.0f}", what, detail)
    return table


def render_frame(frame: DemoFrame, *, options: DemoOptions) -> RenderableType:
    """The whole view for one frame."""
    twin = frame.twin
    title = (
        f"tokenscale demo · {options.trace} · {options.policy} · {options.speedup:g}× · "
        f"t = {twin.simulated_seconds:,.0f} / {options.simulated_seconds:,.0f} s simulated"
    )
    return Panel(Group(_stages(frame), _summary(frame), _activity(frame)), title=title, title_align="left")
