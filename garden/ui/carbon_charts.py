"""Plotly figures of the Carbon tab, drawn from ``CarbonRow`` and ``LivePower`` views."""

from __future__ import annotations

from datetime import datetime

import plotly.graph_objects as go

from garden import present
from garden.services.carbon import CarbonRow, LivePower

KINDS = ("training", "chat", "other")
KIND_COLOURS = {"training": "#059669", "chat": "#65a30d", "other": "#a8a29e"}
COMPONENT_COLOURS = {"CPU": "#0d9488", "GPU": "#7c3aed", "RAM": "#d97706"}


def empty_figure(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font={"size": 14, "color": "#78716c"})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(template="plotly_white", height=300, margin={"l": 20, "r": 20, "t": 40})
    return fig


def _layout(fig: go.Figure, title: str) -> go.Figure:
    fig.update_layout(
        title=title,
        template="plotly_white",
        height=330,
        margin={"l": 50, "r": 20, "t": 50, "b": 40},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts).isoformat(timespec="seconds")


def _grams(kg: float | None) -> float:
    return (kg or 0.0) * 1000


def period_figures(rows: list[CarbonRow]) -> tuple[go.Figure, go.Figure, go.Figure, go.Figure]:
    """Cumulative CO2, CO2 per run, energy by component, and eval loss vs CO2."""
    measured = [row for row in rows if row.energy_kwh is not None]
    if not measured:
        empty = "No measured runs in this period yet"
        return tuple(empty_figure(empty) for _ in range(4))
    return cumulative(measured), per_run(measured), components(measured), loss_vs_co2(measured)


def cumulative(rows: list[CarbonRow]) -> go.Figure:
    xs, ys, total = [rows[0].started], [0.0], 0.0
    for row in sorted(rows, key=lambda row: row.ended_at):
        total += _grams(row.emissions_kg)
        xs.append(_iso(row.ended_at))
        ys.append(total)
    fig = go.Figure(
        go.Scatter(
            x=xs,
            y=ys,
            mode="lines+markers",
            line={"color": "#059669", "shape": "hv"},
            fill="tozeroy",
        )
    )
    fig.update_yaxes(title="g CO₂e", rangemode="tozero")
    return _layout(fig, "Cumulative CO₂e (at the end of each run)")


def per_run(rows: list[CarbonRow]) -> go.Figure:
    fig = go.Figure()
    for kind in KINDS:
        subset = [row for row in rows if row.kind == kind]
        if not subset:
            continue
        fig.add_trace(
            go.Bar(
                x=[
                    f"{present.run_name(r.label, r.ref_id, r.id)} · {r.started[5:16]}"
                    for r in subset
                ],
                y=[_grams(r.emissions_kg) for r in subset],
                name=f"{kind} CO₂e (g)",
                marker_color=KIND_COLOURS[kind],
                customdata=[(r.energy_kwh or 0.0) * 1000 for r in subset],
                hovertemplate="%{x}<br>%{y:.4g} g CO₂e<br>%{customdata:.4g} Wh<extra></extra>",
            )
        )
    fig.update_yaxes(title="g CO₂e")
    return _layout(fig, "CO₂e and energy per run (hover for Wh)")


def components(rows: list[CarbonRow]) -> go.Figure:
    fig = go.Figure()
    for name in COMPONENT_COLOURS:
        watt_hours = [
            sum((_component_kwh(row, name) or 0.0) * 1000 for row in rows if row.kind == kind)
            for kind in KINDS
        ]
        fig.add_trace(
            go.Bar(x=list(KINDS), y=watt_hours, name=name, marker_color=COMPONENT_COLOURS[name])
        )
    fig.update_layout(barmode="stack")
    fig.update_yaxes(title="Wh")
    return _layout(fig, "Energy by component")


def _component_kwh(row: CarbonRow, name: str) -> float | None:
    return {"CPU": row.cpu_energy_kwh, "GPU": row.gpu_energy_kwh, "RAM": row.ram_energy_kwh}[name]


def loss_vs_co2(rows: list[CarbonRow]) -> go.Figure:
    trained = [r for r in rows if r.kind == "training" and r.final_eval_loss is not None]
    if not trained:
        return empty_figure(
            "No fine-tuning run with an eval loss yet: train with an eval split to compare"
        )
    fig = go.Figure(
        go.Scatter(
            x=[_grams(r.emissions_kg) for r in trained],
            y=[r.final_eval_loss for r in trained],
            mode="markers+text",
            text=[r.label or r.ref_id for r in trained],
            textposition="top center",
            marker={"size": 12, "color": "#059669"},
            hovertemplate="%{text}<br>%{x:.4g} g CO₂e<br>eval loss %{y:.4f}<extra></extra>",
        )
    )
    fig.update_xaxes(title="g CO₂e", rangemode="tozero")
    fig.update_yaxes(title="final eval loss (lower is better)")
    return _layout(fig, "Quality per gram: final eval loss vs CO₂e")


def live_power(live: LivePower) -> go.Figure:
    """Stacked attributed power of the run being measured (an empty state without one)."""
    if live.run is None:
        return empty_figure("No run is being measured right now")
    if not live.times:
        return empty_figure("Waiting for the first reading…")
    xs = [datetime.fromtimestamp(ts) for ts in live.times]
    fig = go.Figure()
    for name, watts in (
        ("CPU", live.cpu_power_w),
        ("GPU", live.gpu_power_w),
        ("RAM", live.ram_power_w),
    ):
        if name == "GPU" and not any(watts):
            continue
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=watts,
                name=name,
                stackgroup="power",
                line={"color": COMPONENT_COLOURS[name]},
            )
        )
    fig.update_yaxes(title="W (attributed)")
    return _layout(fig, f"Live power · {live.kind} · {live.run}")
