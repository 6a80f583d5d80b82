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
    """Quality per gram: each run's ROUGE-L (its newest evaluation) against its CO₂e; a run
    without an evaluation shows its final eval loss on a second axis instead."""
    trained = [r for r in rows if r.kind == "training"]
    scored = [r for r in trained if r.eval_rouge_l is not None]
    fallback = [r for r in trained if r.eval_rouge_l is None and r.final_eval_loss is not None]
    if not scored and not fallback:
        return empty_figure("No evaluated fine-tuning run yet: train with an eval split to compare")
    fig = go.Figure()
    if scored:
        fig.add_trace(
            _quality_trace(scored, [r.eval_rouge_l for r in scored], "ROUGE-L", "#059669")
        )
        fig.update_yaxes(title="ROUGE-L (higher is better)", rangemode="tozero")
    if fallback:
        losses = [r.final_eval_loss for r in fallback]
        fig.add_trace(_quality_trace(fallback, losses, "eval loss", "#a8a29e"))
        if scored:
            fig.data[-1].update(yaxis="y2")
            fig.update_layout(
                yaxis2={
                    "title": "eval loss, runs not evaluated",
                    "overlaying": "y",
                    "side": "right",
                }
            )
        else:
            fig.update_yaxes(title="final eval loss (lower is better)")
    fig.update_xaxes(title="g CO₂e", rangemode="tozero")
    metric = "ROUGE-L" if scored else "final eval loss"
    return _layout(fig, f"Quality per gram: {metric} vs CO₂e")


def _quality_trace(
    rows: list[CarbonRow], values: list[float | None], metric: str, colour: str
) -> go.Scatter:
    grams = [_grams(r.emissions_kg) for r in rows]
    per_gram = [v / g if v is not None and g else None for v, g in zip(values, grams, strict=True)]
    return go.Scatter(
        x=grams,
        y=values,
        name=metric,
        mode="markers+text",
        text=[r.label or r.ref_id for r in rows],
        customdata=per_gram,
        textposition="top center",
        marker={"size": 12, "color": colour},
        hovertemplate=f"%{{text}}<br>%{{x:.4g}} g CO₂e<br>{metric} %{{y:.4f}}"
        f"<br>{metric} per g %{{customdata:.4g}}<extra></extra>",
    )


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
