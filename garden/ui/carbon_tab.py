"""The Carbon tab: what every run and every chat session cost in energy and CO2.

Reads the ``emissions``, ``emission_readings`` and ``jobs`` tables through
``garden.engine.carbon`` (no torch here). Country, region and PUE chosen in the tab only
recompute a "what if" CO2 figure; measured energy is never rewritten.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import gradio as gr

from garden.config import Settings

PERIODS: dict[str, float | None] = {
    "All time": None,
    "Last 24 hours": 86400.0,
    "Last 7 days": 7 * 86400.0,
    "Last 30 days": 30 * 86400.0,
}
KIND_FILTERS = ("All", "training", "chat", "other")
KIND_COLOURS = {"training": "#059669", "chat": "#65a30d", "other": "#a8a29e"}
COMPONENT_COLOURS = {"CPU": "#0d9488", "GPU": "#7c3aed", "RAM": "#d97706"}
TABLE_COLUMNS = {
    "started": "started",
    "kind": "kind",
    "label": "run",
    "duration_s": "duration (s)",
    "energy_wh": "energy (Wh)",
    "emissions_g": "CO₂e (g)",
    "whatif_g": "what-if CO₂e (g)",
    "final_eval_loss": "final eval loss",
    "grid": "grid",
    "power": "power",
    "status": "status",
}


@dataclass
class CarbonView:
    totals_md: str
    cumulative: Any
    per_run: Any
    components: Any
    loss_vs_co2: Any
    table: Any
    about_md: str
    rows: list[dict[str, Any]]


def _wh(kwh: float | None) -> str:
    if kwh is None:
        return "—"
    if kwh >= 1:
        return f"{kwh:,.3f} kWh"
    return f"{kwh * 1000:,.3f} Wh" if kwh >= 1e-3 else f"{kwh * 1e6:,.1f} mWh"


def _g(kg: float | None) -> str:
    if kg is None:
        return "—"
    if kg >= 1:
        return f"{kg:,.3f} kg"
    return f"{kg * 1000:,.3f} g" if kg >= 1e-3 else f"{kg * 1e6:,.1f} mg"


def _empty_figure(message: str) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font={"size": 14, "color": "#78716c"})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(template="plotly_white", height=300, margin={"l": 20, "r": 20, "t": 40})
    return fig


def _iso(ts: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ts).isoformat(timespec="seconds")


def _sig(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else float(f"{value:.{digits}g}")


def _layout(fig: Any, title: str) -> Any:
    fig.update_layout(
        title=title,
        template="plotly_white",
        height=330,
        margin={"l": 50, "r": 20, "t": 50, "b": 40},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def _totals_md(all_totals: dict[str, Any], period_totals: dict[str, Any], period: str) -> str:
    if not all_totals["runs"]:
        return (
            "### No carbon records yet\n"
            "Every fine-tuning run and every chat session is measured automatically. "
            "Start one in the **Fine-tune** or **Chat** tab and its energy and CO₂ appear here."
        )

    from garden.engine.carbon import describe_equivalents

    def line(name: str, totals: dict[str, Any]) -> str:
        whatif = (
            f" · what-if **{_g(totals['whatif_emissions_kg'])}**"
            if totals.get("whatif_emissions_kg") is not None
            else ""
        )
        return (
            f"| {name} | {totals['runs']} | **{_wh(totals['energy_kwh'])}** | "
            f"**{_g(totals['emissions_kg'])}**{whatif} | "
            f"{describe_equivalents(totals['equivalents'])} |"
        )

    text = (
        "| | runs | energy | CO₂e | about the same as |\n|---|---|---|---|---|\n"
        + line("All time", all_totals)
        + "\n"
    )
    if period != "All time":
        text += line(period, period_totals) + "\n"
    notes = []
    if all_totals["running"]:
        notes.append(f"{all_totals['running']} still being measured")
    if all_totals["unavailable"]:
        notes.append(f"{all_totals['unavailable']} without carbon data (see the table for why)")
    if notes:
        text += "\n_" + "; ".join(notes) + "._"
    return text


def _figures(rows: list[dict[str, Any]]) -> tuple[Any, Any, Any, Any]:
    import plotly.graph_objects as go

    measured = [r for r in rows if r["energy_kwh"] is not None]
    if not measured:
        empty = "No measured runs in this period yet"
        return (_empty_figure(empty),) * 4  # type: ignore[return-value]

    cumulative = go.Figure()
    running_total = 0.0
    xs, ys = [measured[0]["started"]], [0.0]
    for r in sorted(measured, key=lambda r: r["started_at"] + (r["duration_s"] or 0.0)):
        running_total += (r["emissions_kg"] or 0.0) * 1000
        xs.append(_iso(r["started_at"] + (r["duration_s"] or 0.0)))
        ys.append(running_total)
    cumulative.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="lines+markers",
            line={"color": "#059669", "shape": "hv"},
            fill="tozeroy",
        )
    )
    cumulative.update_yaxes(title="g CO₂e", rangemode="tozero")
    _layout(cumulative, "Cumulative CO₂e (at the end of each run)")

    per_run = go.Figure()
    for kind in ("training", "chat", "other"):
        subset = [r for r in measured if r["kind"] == kind]
        if not subset:
            continue
        labels = [f"{r['label'] or r['ref_id'] or r['id']} · {r['started'][5:16]}" for r in subset]
        per_run.add_trace(
            go.Bar(
                x=labels,
                y=[(r["emissions_kg"] or 0.0) * 1000 for r in subset],
                name=f"{kind} CO₂e (g)",
                marker_color=KIND_COLOURS[kind],
                customdata=[(r["energy_kwh"] or 0.0) * 1000 for r in subset],
                hovertemplate="%{x}<br>%{y:.4g} g CO₂e<br>%{customdata:.4g} Wh<extra></extra>",
            )
        )
    per_run.update_yaxes(title="g CO₂e")
    _layout(per_run, "CO₂e and energy per run (hover for Wh)")

    components = go.Figure()
    for name, key in (
        ("CPU", "cpu_energy_kwh"),
        ("GPU", "gpu_energy_kwh"),
        ("RAM", "ram_energy_kwh"),
    ):
        by_kind = {
            kind: sum((r[key] or 0.0) * 1000 for r in measured if r["kind"] == kind)
            for kind in ("training", "chat", "other")
        }
        components.add_trace(
            go.Bar(
                x=list(by_kind),
                y=list(by_kind.values()),
                name=name,
                marker_color=COMPONENT_COLOURS[name],
            )
        )
    components.update_layout(barmode="stack")
    components.update_yaxes(title="Wh")
    _layout(components, "Energy by component")

    trained = [r for r in measured if r["kind"] == "training" and r["final_eval_loss"] is not None]
    if trained:
        loss_vs_co2 = go.Figure(
            go.Scatter(
                x=[(r["emissions_kg"] or 0.0) * 1000 for r in trained],
                y=[r["final_eval_loss"] for r in trained],
                mode="markers+text",
                text=[r["label"] or r["ref_id"] for r in trained],
                textposition="top center",
                marker={"size": 12, "color": "#059669"},
                hovertemplate="%{text}<br>%{x:.4g} g CO₂e<br>eval loss %{y:.4f}<extra></extra>",
            )
        )
        loss_vs_co2.update_xaxes(title="g CO₂e", rangemode="tozero")
        loss_vs_co2.update_yaxes(title="final eval loss (lower is better)")
        _layout(loss_vs_co2, "Quality per gram: final eval loss vs CO₂e")
    else:
        loss_vs_co2 = _empty_figure(
            "No fine-tuning run with an eval loss yet: train with an eval split to compare"
        )
    return cumulative, per_run, components, loss_vs_co2


def _table(rows: list[dict[str, Any]]) -> Any:
    import pandas as pd

    from garden.engine.carbon import power_label

    records = []
    for r in reversed(rows):
        grid = r["country_iso_code"] or ""
        if r["region"]:
            grid += f"/{r['region']}"
        status = r["status"]
        if status == "unavailable":
            status = f"carbon: unavailable — {r['unavailable_reason']}"
        records.append(
            {
                "started": r["started"],
                "kind": r["kind"],
                "label": r["label"] or r["ref_id"] or r["id"],
                "duration_s": round(r["duration_s"] or 0.0, 1),
                "energy_wh": None if r["energy_kwh"] is None else _sig(r["energy_kwh"] * 1000),
                "emissions_g": None
                if r["emissions_kg"] is None
                else _sig(r["emissions_kg"] * 1000),
                "whatif_g": None
                if r["whatif_emissions_kg"] is None
                else _sig(r["whatif_emissions_kg"] * 1000),
                "final_eval_loss": _sig(r["final_eval_loss"]),
                "grid": grid,
                "power": power_label(r["power_source"]),
                "status": status,
            }
        )
    frame = pd.DataFrame(records, columns=list(TABLE_COLUMNS))
    return frame.rename(columns=TABLE_COLUMNS)


def _about_md(rows: list[dict[str, Any]], country: str, region: str | None, pue: float) -> str:
    from garden.engine.carbon import EQUIVALENT_SOURCES, grid_intensity

    sources = sorted({r["power_source"] for r in rows if r["power_source"]})
    grids = sorted(
        {(r["country_iso_code"], r["region"] or "") for r in rows if r["country_iso_code"]}
    )
    lines = ["#### How power was obtained"]
    if sources:
        lines += [f"- {source}" for source in sources]
    else:
        lines.append("- No measured run yet.")
    lines += [
        "",
        "**Measured** means read from hardware energy counters (Intel/AMD RAPL for CPUs, NVML "
        "for NVIDIA GPUs). **Estimated** means CodeCarbon computed power from the CPU's TDP "
        "and its load (or a constant share of TDP), and RAM power from installed memory: good "
        "for comparing runs, not a meter reading.",
        "",
        "#### Whose energy",
        "CodeCarbon measures the whole machine. Each run is credited with the machine's CPU and "
        "RAM energy times its **CPU share** (the CPU time of its own processes over the CPU "
        "time of the whole machine, per interval), and an equal share of GPU energy among "
        "runs measured at the same time. So a chat session and a training run that overlap "
        "never count the same energy twice, and other programs on the machine are not "
        "charged to your runs. A chat answer gets its session's energy over the answer's "
        "duration, spread in proportion to the session's CPU time.",
        "",
        "#### Grid intensity",
    ]
    for iso, reg in grids:
        try:
            value = grid_intensity(iso, reg or None) * 1000
            lines.append(
                f"- measured runs in **{iso}{'/' + reg if reg else ''}**: {value:.0f} g CO₂e/kWh"
            )
        except Exception:
            lines.append(f"- {iso}{'/' + reg if reg else ''}: unknown to CodeCarbon's data")
    try:
        value = grid_intensity(country, region or None) * 1000
        lines.append(
            f"- what-if grid **{country}{'/' + region if region else ''}**, PUE {pue:g}: "
            f"{value:.0f} g CO₂e/kWh"
        )
    except Exception:
        pass
    lines += [
        "",
        "Intensities come from CodeCarbon's bundled data (no network). The what-if column "
        "recomputes CO₂ from the *measured* energy under the grid and PUE chosen above; it "
        "never overwrites a measurement.",
        "",
        "#### Equivalents",
    ]
    lines += [
        f"- {name.replace('_', ' ')}: {source}" for name, source in EQUIVALENT_SOURCES.items()
    ]
    return "\n".join(lines)


def compute_view(
    settings: Settings,
    period: str = "All time",
    kind: str = "All",
    search: str = "",
    country: str | None = None,
    region: str | None = None,
    pue: float | None = 1.0,
) -> CarbonView:
    """Everything the tab shows, from the store (also used by tests)."""
    from garden.engine.carbon import list_records, report_rows, summarize

    if not country:
        country, region = settings.carbon_country_code, region or settings.carbon_region
    pue = float(pue or 1.0)
    whatif = (country, region or None, pue)
    try:
        all_rows = report_rows(list_records(settings), settings, what_if_grid=whatif)
    except Exception:
        all_rows = report_rows(list_records(settings), settings)
    span = PERIODS.get(period)
    since = time.time() - span if span else None
    period_rows = [r for r in all_rows if since is None or r["started_at"] >= since]
    shown = [
        r
        for r in period_rows
        if (kind in ("All", "", None) or r["kind"] == kind)
        and (
            not search
            or search.lower()
            in " ".join(str(r[k] or "") for k in ("label", "ref_id", "id", "kind")).lower()
        )
    ]
    cumulative, per_run, components, loss_vs_co2 = _figures(period_rows)
    return CarbonView(
        totals_md=_totals_md(summarize(all_rows), summarize(period_rows), period),
        cumulative=cumulative,
        per_run=per_run,
        components=components,
        loss_vs_co2=loss_vs_co2,
        table=_table(shown),
        about_md=_about_md(all_rows, country, region, pue),
        rows=shown,
    )


def live_power(settings: Settings) -> tuple[Any, str]:
    """The power of the run being measured now (latest readings), or an empty state."""
    import plotly.graph_objects as go

    from garden.engine.carbon import list_readings
    from garden.store import get_store

    horizon = time.time() - max(3 * settings.carbon_tracking_interval, 60.0)
    running = get_store(settings.db_path).query(
        "SELECT id, kind, label, ref_id FROM emissions WHERE status = 'running' "
        "AND COALESCE(ended_at, started_at) >= ? ORDER BY started_at DESC LIMIT 1",
        (horizon,),
    )
    if not running:
        return _empty_figure("No run is being measured right now"), ""
    record = running[0]
    readings = list_readings(record["id"], settings)[-600:]
    if not readings:
        return _empty_figure("Waiting for the first reading…"), ""
    from datetime import datetime

    xs = [datetime.fromtimestamp(r["ts"]) for r in readings]
    fig = go.Figure()
    for name, key in (("CPU", "cpu_power_w"), ("GPU", "gpu_power_w"), ("RAM", "ram_power_w")):
        values = [r[key] or 0.0 for r in readings]
        if name == "GPU" and not any(values):
            continue
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=values,
                name=name,
                stackgroup="power",
                line={"color": COMPONENT_COLOURS[name]},
            )
        )
    fig.update_yaxes(title="W (attributed)")
    name = record["label"] or record["ref_id"] or record["id"]
    _layout(fig, f"Live power · {record['kind']} · {name}")
    last = readings[-1]
    text = (
        f"**{name}** ({record['kind']}): {_wh(last['energy_kwh'])} so far, "
        f"{_g(last['emissions_kg'])} CO₂e"
    )
    return fig, text


def _fingerprint(settings: Settings) -> str:
    """Changes whenever a record is added or updated (cheap: one aggregate query)."""
    from garden.store import get_store

    row = get_store(settings.db_path).query(
        "SELECT COUNT(*) AS n, MAX(COALESCE(ended_at, started_at)) AS last, "
        "SUM(status = 'running') AS running FROM emissions"
    )[0]
    return f"{row['n']}:{row['last']}:{row['running']}"


def export_csv(settings: Settings, rows: list[dict[str, Any]]) -> str:
    from garden.engine.carbon import write_csv

    path = settings.temp_path / f"carbon-report-{time.strftime('%Y%m%d-%H%M%S')}.csv"
    return str(write_csv(rows, path))


def build(settings: Settings) -> None:
    from garden.engine.carbon import list_countries, list_regions

    countries = [(f"{name} ({iso})", iso) for iso, name in list_countries()]
    default_regions = ["", *list_regions(settings.carbon_country_code)]
    default_region = (
        settings.carbon_region.lower() if settings.carbon_region.lower() in default_regions else ""
    )

    gr.Markdown(
        "### 🌍 Carbon\nEnergy and CO₂ of every fine-tuning run and chat session, measured "
        "offline with CodeCarbon. Figures are estimates unless marked *measured*: see "
        "**About these numbers** below."
    )
    with gr.Row():
        period = gr.Dropdown(list(PERIODS), value="All time", label="Period", scale=1)
        country = gr.Dropdown(
            countries,
            value=settings.carbon_country_code,
            label="What-if country",
            info="Recompute CO₂ of past runs on another grid",
            scale=2,
        )
        region = gr.Dropdown(
            default_regions,
            value=default_region,
            label="What-if region",
            info="USA and Canada have regional data",
            scale=2,
        )
        pue = gr.Number(
            1.0, label="What-if PUE", minimum=1.0, maximum=3.0, step=0.05, precision=2, scale=1
        )
        refresh = gr.Button("↻ Refresh", scale=0)
    totals = gr.Markdown(elem_id="carbon-totals")
    with gr.Row():
        cumulative = gr.Plot(label="Cumulative CO₂e", show_label=False)
        per_run = gr.Plot(label="CO₂e per run", show_label=False)
    with gr.Row():
        components = gr.Plot(label="Energy by component", show_label=False)
        loss_vs_co2 = gr.Plot(label="Final eval loss vs CO₂e", show_label=False)
    live_md = gr.Markdown()
    live_plot = gr.Plot(label="Live power", show_label=False)
    with gr.Row():
        kind = gr.Dropdown(list(KIND_FILTERS), value="All", label="Kind", scale=1)
        search = gr.Textbox(label="Search runs", placeholder="name or id", scale=3)
        export = gr.Button("Export CSV", scale=0)
    table = gr.Dataframe(interactive=False, wrap=True, max_height=420, label="Carbon records")
    csv_file = gr.File(label="CSV export", visible=False)
    with gr.Accordion("About these numbers", open=False):
        about = gr.Markdown()
    rows_state = gr.State([])

    inputs = [period, kind, search, country, region, pue]
    outputs = [totals, cumulative, per_run, components, loss_vs_co2, table, about, rows_state]

    def refresh_view(
        period_v: str, kind_v: str, search_v: str, country_v: str, region_v: str, pue_v: float
    ) -> list[Any]:
        try:
            view = compute_view(settings, period_v, kind_v, search_v, country_v, region_v, pue_v)
        except Exception as exc:
            gr.Warning(f"Could not read the carbon records: {exc}")
            return [gr.update()] * len(outputs)
        return [
            view.totals_md,
            view.cumulative,
            view.per_run,
            view.components,
            view.loss_vs_co2,
            view.table,
            view.about_md,
            view.rows,
        ]

    def refresh_if_changed(
        fingerprint: str,
        period_v: str,
        kind_v: str,
        search_v: str,
        country_v: str,
        region_v: str,
        pue_v: float,
    ) -> list[Any]:
        current = _fingerprint(settings)
        if current == fingerprint:
            return [gr.update()] * (len(outputs) + 1)
        return [*refresh_view(period_v, kind_v, search_v, country_v, region_v, pue_v), current]

    def change_country(country_v: str) -> Any:
        choices = ["", *list_regions(country_v or "")]
        return gr.update(choices=choices, value="")

    def refresh_live() -> list[Any]:
        try:
            fig, text = live_power(settings)
        except Exception as exc:
            return [gr.update(), f"_Live power unavailable: {exc}_"]
        return [fig, text]

    def do_export(rows: list[dict[str, Any]]) -> Any:
        if not rows:
            gr.Warning("Nothing to export: no carbon records match the filters.")
            return gr.update(visible=False)
        try:
            return gr.update(value=export_csv(settings, rows), visible=True)
        except OSError as exc:
            gr.Warning(
                f"Could not write the CSV ({exc}); check that STORAGE_ROOT/temp is writable."
            )
            return gr.update(visible=False)

    country.change(change_country, country, region)
    gr.on(
        [period.change, kind.change, search.submit, region.change, pue.change, refresh.click],
        refresh_view,
        inputs,
        outputs,
    )
    export.click(do_export, rows_state, csv_file)
    timer = gr.Timer(3.0)
    timer.tick(refresh_live, None, [live_plot, live_md], show_progress="hidden")
    fingerprint = gr.State("")
    slow_timer = gr.Timer(10.0)
    slow_timer.tick(
        refresh_if_changed, [fingerprint, *inputs], [*outputs, fingerprint], show_progress="hidden"
    )

    from gradio.context import Context

    root = Context.root_block
    if root is not None:
        root.load(refresh_view, inputs, outputs)
        root.load(refresh_live, None, [live_plot, live_md])
