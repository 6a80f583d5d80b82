"""The Carbon tab: what every run and every chat session cost in energy and CO2.

Layout and bindings over ``garden.services.carbon``. Country, region and PUE chosen in the
tab only recompute a "what if" CO2 figure; measured energy is never rewritten.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, fields
from typing import Any

import gradio as gr
import pandas as pd
from gradio.blocks import Block
from gradio.context import Context

from garden import present
from garden.config import Settings
from garden.errors import GardenError
from garden.services import carbon as carbon_service
from garden.services.carbon import CarbonReport, CarbonRow, CarbonSummary, WhatIfGrid
from garden.ui import carbon_charts
from garden.ui.boundary import OnShow, guard, one_line, plain

PERIODS: dict[str, float | None] = {
    "All time": None,
    "Last 24 hours": 86400.0,
    "Last 7 days": 7 * 86400.0,
    "Last 30 days": 30 * 86400.0,
}
log = logging.getLogger("garden.ui.carbon")
KIND_FILTERS = ("All", "training", "chat", "other")
TABLE_COLUMNS = (
    "started",
    "kind",
    "run",
    "duration (s)",
    "energy (Wh)",
    "CO₂e (g)",
    "what-if CO₂e (g)",
    "final eval loss",
    "grid",
    "power",
    "status",
)
NO_RECORDS_MD = (
    "### No carbon records yet\n"
    "Every fine-tuning run and every chat session is measured automatically. "
    "Start one in the **Fine-tune** or **Chat** tab and its energy and CO₂ appear here."
)
ATTRIBUTION_MD = """#### How power was obtained
{sources}

**Measured** means read from hardware energy counters (Intel/AMD RAPL for CPUs, NVML for \
NVIDIA GPUs). **Estimated** means CodeCarbon computed power from the CPU's TDP and its load (or \
a constant share of TDP), and RAM power from installed memory: good for comparing runs, not a \
meter reading.

#### Whose energy
CodeCarbon measures the whole machine. Each run is credited with the machine's CPU and RAM \
energy times its **CPU share** (the CPU time of its own processes over the CPU time of the \
whole machine, per interval), and an equal share of GPU energy among runs measured at the same \
time. So a chat session and a training run that overlap never count the same energy twice, \
and other programs on the machine are not charged to your runs. A chat answer gets its \
session's energy over the answer's duration, spread in proportion to the session's CPU time.

#### Grid intensity
{grids}

Intensities come from CodeCarbon's bundled data (no network). The what-if column recomputes \
CO₂ from the *measured* energy under the grid and PUE chosen above; it never overwrites a \
measurement.

#### Equivalents
{equivalents}"""


@dataclass(frozen=True)
class Filters:
    """What the tab is asked to show."""

    period: str = "All time"
    kind: str = "All"
    search: str = ""
    country: str | None = None
    region: str | None = None
    pue: float | None = 1.0

    def since(self) -> float | None:
        span = PERIODS.get(self.period)
        return time.time() - span if span else None

    def what_if(self, settings: Settings) -> WhatIfGrid:
        """The chosen grid, or the configured one when no country is chosen."""
        region = self.region if self.country else self.region or settings.carbon_region
        return WhatIfGrid(
            country=self.country or settings.carbon_country_code,
            region=region or None,
            pue=float(self.pue or 1.0),
        )


@dataclass
class FilterInputs:
    """The filter components; ``read`` turns Gradio's ``{component: value}`` into ``Filters``."""

    period: gr.Dropdown
    kind: gr.Dropdown
    search: gr.Textbox
    country: gr.Dropdown
    region: gr.Dropdown
    pue: gr.Number

    def components(self) -> set[Block]:
        return {getattr(self, field.name) for field in fields(self)}

    def read(self, values: dict[Block, Any]) -> Filters:
        return Filters(**{field.name: values[getattr(self, field.name)] for field in fields(self)})


@dataclass
class CarbonPanel:
    """Everything the tab shows; ``PanelOutputs`` holds the components of the same names."""

    totals: str
    cumulative: Any
    per_run: Any
    components: Any
    loss_vs_co2: Any
    table: pd.DataFrame
    about: str
    rows: list[CarbonRow]


@dataclass
class PanelOutputs:
    totals: gr.Markdown
    cumulative: gr.Plot
    per_run: gr.Plot
    components: gr.Plot
    loss_vs_co2: gr.Plot
    table: gr.Dataframe
    about: gr.Markdown
    rows: gr.State

    def components_list(self) -> list[Block]:
        return [getattr(self, field.name) for field in fields(self)]

    def show(self, panel: CarbonPanel) -> dict[Block, Any]:
        return {getattr(self, field.name): getattr(panel, field.name) for field in fields(self)}


# What is shown -----------------------------------------------------------------------------


def render(filters: Filters, settings: Settings) -> CarbonPanel:
    """The whole panel for ``filters`` (also used by tests)."""
    what_if: WhatIfGrid | None = filters.what_if(settings)
    try:
        everything = carbon_service.report(what_if=what_if, settings=settings)
    except GardenError:
        what_if = None
        everything = carbon_service.report(settings=settings)
    since = filters.since()
    period = carbon_service.report(since, what_if=what_if, settings=settings)
    kind = None if filters.kind in ("All", "") else filters.kind
    shown = period
    if kind or filters.search:
        shown = carbon_service.report(
            since, kind, filters.search or "", what_if=what_if, settings=settings
        )
    cumulative, per_run, components, loss_vs_co2 = carbon_charts.period_figures(period.rows)
    return CarbonPanel(
        totals=totals_md(everything.summary, period.summary, filters.period),
        cumulative=cumulative,
        per_run=per_run,
        components=components,
        loss_vs_co2=loss_vs_co2,
        table=records_table(shown),
        about=about_md(everything.rows, filters.what_if(settings)),
        rows=shown.rows,
    )


def totals_md(everything: CarbonSummary, period: CarbonSummary, period_name: str) -> str:
    if not everything.runs:
        return NO_RECORDS_MD

    def line(name: str, totals: CarbonSummary) -> str:
        whatif = ""
        if totals.whatif_emissions_kg is not None:
            whatif = f" · what-if **{present.co2(totals.whatif_emissions_kg)}**"
        return (
            f"| {name} | {totals.runs} | **{present.energy(totals.energy_kwh)}** | "
            f"**{present.co2(totals.emissions_kg)}**{whatif} | "
            f"{present.describe_equivalents(totals.equivalents)} |\n"
        )

    text = "| | runs | energy | CO₂e | about the same as |\n|---|---|---|---|---|\n"
    text += line("All time", everything)
    if period_name != "All time":
        text += line(period_name, period)
    notes = []
    if everything.running:
        notes.append(f"{everything.running} still being measured")
    if everything.unavailable:
        notes.append(f"{everything.unavailable} without carbon data (see the table for why)")
    return text + ("\n_" + "; ".join(notes) + "._" if notes else "")


def records_table(report: CarbonReport) -> pd.DataFrame:
    """The records, newest first, as the table shows them."""
    grams = present.significant
    values = [
        (
            row.started,
            row.kind,
            present.run_name(row.label, row.ref_id, row.id),
            round(row.duration_s or 0.0, 1),
            grams(None if row.energy_kwh is None else row.energy_kwh * 1000),
            grams(None if row.emissions_kg is None else row.emissions_kg * 1000),
            grams(None if row.whatif_emissions_kg is None else row.whatif_emissions_kg * 1000),
            present.significant(row.final_eval_loss),
            present.grid_label(row.country_iso_code, row.region),
            present.power_label(row.power_source),
            present.carbon_status(row.status, row.unavailable_reason),
        )
        for row in reversed(report.rows)
    ]
    return pd.DataFrame(values, columns=list(TABLE_COLUMNS))


def about_md(rows: list[CarbonRow], what_if: WhatIfGrid) -> str:
    sources = sorted({row.power_source for row in rows if row.power_source})
    grids = sorted({(row.country_iso_code, row.region) for row in rows if row.country_iso_code})
    grid_lines = [
        _grid_line(f"measured runs in **{present.grid_label(iso, region)}**", iso, region)
        for iso, region in grids
    ]
    label = present.grid_label(what_if.country, what_if.region)
    grid_lines.append(
        _grid_line(
            f"what-if grid **{label}**, PUE {what_if.pue:g}", what_if.country, what_if.region
        )
    )
    return ATTRIBUTION_MD.format(
        sources="\n".join(f"- {s}" for s in sources) or "- No measured run yet.",
        grids="\n".join(line for line in grid_lines if line),
        equivalents="\n".join(
            f"- {name.replace('_', ' ')}: {source}"
            for name, source in present.EQUIVALENT_SOURCES.items()
        ),
    )


def _grid_line(title: str, country: str | None, region: str | None) -> str:
    try:
        value = carbon_service.grid_intensity(country or "", region)
    except GardenError:
        return f"- {title}: unknown to CodeCarbon's data"
    return f"- {title}: {present.intensity(value)}"


def live_power_md(live: carbon_service.LivePower) -> str:
    if live.run is None or not live.times:
        return ""
    return (
        f"**{live.run}** ({live.kind}): {present.carbon_so_far(live.energy_kwh, live.emissions_kg)}"
    )


# Layout and bindings -----------------------------------------------------------------------


def build(settings: Settings) -> OnShow:
    countries = [(f"{c.name} ({c.iso_code})", c.iso_code) for c in carbon_service.countries()]
    default_regions = ["", *carbon_service.regions(settings.carbon_country_code)]
    region_value = settings.carbon_region.lower()
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
            value=region_value if region_value in default_regions else "",
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
    table = gr.Dataframe(
        interactive=False,
        wrap=True,
        max_height=420,
        label="Carbon records",
        elem_id="carbon-records",
    )
    csv_file = gr.File(label="CSV export", visible=False)
    with gr.Accordion("About these numbers", open=False):
        about = gr.Markdown()
    inputs = FilterInputs(period, kind, search, country, region, pue)
    outputs = PanelOutputs(
        totals, cumulative, per_run, components, loss_vs_co2, table, about, gr.State([])
    )
    return _bind(settings, inputs, outputs, refresh, export, csv_file, live_plot, live_md)


def _unchanged(_message: str) -> dict[Block, Any]:
    return {}


def _bind(
    settings: Settings,
    inputs: FilterInputs,
    outputs: PanelOutputs,
    refresh: gr.Button,
    export: gr.Button,
    csv_file: gr.File,
    live_plot: gr.Plot,
    live_md: gr.Markdown,
) -> OnShow:
    fingerprint = gr.State("")
    panel_outputs = outputs.components_list()

    @guard("reading the carbon records", _unchanged, settings)
    def refresh_view(values: dict[Block, Any]) -> dict[Block, Any]:
        return outputs.show(render(inputs.read(values), settings))

    @guard("checking for new carbon records", _unchanged, settings)
    def refresh_if_changed(values: dict[Block, Any]) -> dict[Block, Any]:
        current = carbon_service.fingerprint(settings=settings)
        if current == values[fingerprint]:
            return {}
        return {**refresh_view(values), fingerprint: current}

    @guard("listing regions", lambda _: gr.update(), settings)
    def change_country(country: str) -> Any:
        return gr.update(choices=["", *carbon_service.regions(country or "")], value="")

    def refresh_live() -> tuple[Any, str]:
        try:
            live = carbon_service.live_power(settings=settings)
        except Exception as exc:  # the boundary: one line, trace to the log
            log.info("live power unavailable", exc_info=exc)
            return gr.update(), f"_Live power unavailable: {plain(one_line(exc, 'reading power'))}_"
        return carbon_charts.live_power(live), live_power_md(live)

    @guard("exporting the CSV", lambda _: gr.update(visible=False), settings)
    def do_export(rows: list[CarbonRow]) -> Any:
        if not rows:
            gr.Warning("Nothing to export: no carbon records match the filters.")
            return gr.update(visible=False)
        try:
            return gr.update(
                value=str(carbon_service.export_csv(rows, settings=settings)), visible=True
            )
        except OSError as exc:
            log.warning("CSV export failed", exc_info=exc)
            gr.Warning(
                f"Could not write the CSV ({exc.strerror or type(exc).__name__}); "
                "check that STORAGE_ROOT/temp is writable."
            )
            return gr.update(visible=False)

    filters = inputs.components()
    inputs.country.change(change_country, inputs.country, inputs.region)
    gr.on(
        [
            inputs.period.change,
            inputs.kind.change,
            inputs.search.submit,
            inputs.region.change,
            inputs.pue.change,
            refresh.click,
        ],
        refresh_view,
        filters,
        panel_outputs,
    )
    export.click(do_export, outputs.rows, csv_file)
    # Off until the tab is opened (garden.ui.build_app): a hidden chart costs the page CPU.
    live_timer, records_timer = gr.Timer(3.0, active=False), gr.Timer(10.0, active=False)
    live_timer.tick(refresh_live, None, [live_plot, live_md], show_progress="hidden")
    records_timer.tick(
        refresh_if_changed,
        {fingerprint, *filters},
        [*panel_outputs, fingerprint],
        show_progress="hidden",
    )
    root = Context.root_block
    if root is not None:
        root.load(refresh_view, filters, panel_outputs)
        root.load(refresh_live, None, [live_plot, live_md])
    return OnShow(lambda: (), [], (live_timer, records_timer))
