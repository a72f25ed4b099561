"""The demo's live terminal view (rich): one `DemoFrame` rendered as panels, in simulated units.

- per stage: tokens/s arriving (the twin's truth, and the operator's estimate from the metrics) against the Ready
  capacity the operator computes; replicas desired (the last decision) and Ready / starting / draining pods;
- converted decoders, queues, SLO attainment so far (decided requests; pending ones counted apart);
- the recent decisions (the service's status) and what the twin saw happen to pods.
"""

from __future__ import annotations

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
    table = Table(expand=True, title="tokens per second (simulated) and replicas", title_justify="left")
    for column in (
        "stage",
        "arriving (twin)",
        "arriving (operator)",
        "Ready capacity",
        "desired",
        "Ready",
        "starting",
        "draining",
    ):
        table.add_column(column, justify="left" if column == "stage" else "right", no_wrap=True)
    prefill_over = twin.arriving_prompt_tokens_per_second > frame.prefill_capacity_tokens_per_second > 0
    table.add_row(
        "prefill",
        Text(_rate(twin.arriving_prompt_tokens_per_second), style="bold red" if prefill_over else ""),
        _rate(frame.operator_arriving_prompt_tokens_per_second),
        _rate(frame.prefill_capacity_tokens_per_second),
        str(frame.prefill_desired),
        str(twin.prefill.ready),
        str(twin.prefill.starting),
        str(twin.prefill.draining),
    )
    table.add_row(
        "decode",
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
    table = Table.grid(padding=(0, 2), expand=True)
    table.add_column(style="bold")
    table.add_column()
    converted = ", ".join(frame.converted_pods) or "none"
    table.add_row("converted decoders", f"{twin.converted} ({converted})")
    table.add_row("queues (requests)", f"prefill {twin.prefill_queue}, decode {twin.decode_queue}")
    table.add_row(
        "SLO attainment so far",
        f"{_percent(slo.attainment)} of {slo.decided} decided (TTFT tier and TPOT); {slo.pending} pending; "
        f"{twin.requests_arrived} arrived, {twin.requests_finished} finished",
    )
    table.add_row("GPU time", f"{twin.gpu_seconds / 3600:.2f} GPU-h (simulated)")
    conditions = ", ".join(f"{kind} {value}" for kind, value in frame.conditions.items())
    table.add_row("conditions", conditions or "–")
    return table


def _activity(frame: DemoFrame) -> Table:
    table = Table(expand=True, title="recent decisions (status) and pod events (twin)", title_justify="left")
    table.add_column("t (s)", justify="right", no_wrap=True)
    table.add_column("what", no_wrap=True)
    table.add_column("detail", overflow="ellipsis", no_wrap=True)
    rows: list[tuple[float, str, str]] = [
        (d.simulated_seconds, f"{d.action} → P {d.prefill_replicas} D {d.decode_replicas}", d.reason)
        for d in frame.recent_decisions
    ]
    rows += [(e.simulated_seconds, f"{e.role.value} pod {e.kind}", e.pod) for e in frame.recent_events]
    for seconds, what, detail in sorted(rows)[-8:]:
        table.add_row(f"{seconds:,.0f}", what, detail)
    return table


def render_frame(frame: DemoFrame, *, options: DemoOptions) -> RenderableType:
    """The whole view for one frame."""
    twin = frame.twin
    title = (
        f"tokenscale demo · {options.trace} from {options.slice_start_seconds:g} s ×{options.slice_rate_scale:g} · "
        f"policy {options.policy} · {options.speedup:g}× speed · simulated {twin.simulated_seconds:,.0f} s of "
        f"{options.simulated_seconds:,.0f} s · wall {frame.wall_seconds:,.0f} / {options.duration_seconds:g} s"
    )
    return Panel(Group(_stages(frame), _summary(frame), _activity(frame)), title=title, title_align="left")
