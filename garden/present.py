"""How numbers are shown to people, the same in every front end: units, stats lines, equivalents.

Pure functions over plain numbers and service views; no I/O, no gradio, no torch. For front ends
only: the engine never imports it (the plain units it shares are in ``garden.units``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from garden.units import (
    EQUIVALENT_SOURCES,
    MISSING,
    Equivalents,
    co2,
    duration,
    energy,
    equivalents,
    file_size,
    local_time,
    number,
    plain,
)

__all__ = [
    "EQUIVALENT_SOURCES",
    "MISSING",
    "Equivalents",
    "co2",
    "duration",
    "energy",
    "equivalents",
    "file_size",
    "local_time",
    "number",
    "plain",
    "quant_cost",
]

if TYPE_CHECKING:
    from garden.services.datasets import TokenStats
    from garden.services.export import QuantCost
    from garden.services.training import JobView


def describe_equivalents(eq: Equivalents) -> str:
    """One line for people: "≈ 7.7 cm by car · 0.0057 smartphone charges · …"."""
    km = eq.car_km
    if km >= 1:
        distance = f"{plain(km)} km"
    elif km >= 0.001:
        distance = f"{plain(km * 1000)} m"
    else:
        distance = f"{plain(km * 100000)} cm"
    return (
        f"≈ {distance} by car · {plain(eq.smartphone_charges)} smartphone charges · "
        f"{plain(eq.kettle_boils)} kettle boils · {plain(eq.led_bulb_hours)} h of an LED bulb"
    )


# Units (the plain ones are in garden.units) -----------------------------------------------


def power_label(power_source: str | None) -> str:
    """ "measured", "estimated" or "partly measured" from a record's ``power_source``."""
    if not power_source:
        return MISSING
    if "estimated" in power_source and "measured" in power_source:
        return "partly measured"
    return "measured" if "measured" in power_source else "estimated"


# Data --------------------------------------------------------------------------------------
# Lines about datasets, shared by the Data tab (Markdown) and `model-garden data` (plain text).


def _label(text: str, markdown: bool) -> str:
    return f"**{text}:**" if markdown else f"{text}:"


def source_detail(source_kind: str, file_type: str | None) -> str:
    """ "file, jsonl"; "hub, hub" reads "hub"."""
    return f"{source_kind}, {file_type or 'hub'}"


def rows_line(rows: int, valid: int, invalid: int, *, markdown: bool = False) -> str:
    """ "Rows: 21 read · 20 usable · 1 invalid"."""
    return f"{_label('Rows', markdown)} {rows:,} read · {valid:,} usable · {invalid:,} invalid"


def reasoning_line(rows: int, mode: str) -> str | None:
    """ "3 rows carry reasoning (kept)"; None when no row does."""
    if not rows:
        return None
    kept = "kept" if mode == "keep" else "dropped"
    return f"{rows:,} row{'' if rows == 1 else 's'} carry reasoning ({kept})"


def tokens_line(stats: TokenStats, *, markdown: bool = False) -> str | None:
    """ "Tokens (from a random sample of 1,000 rows): min 9 · median 31 · … · ≈41,000 in total";
    None when nothing was counted."""
    if not stats.count:
        return None
    sampled = f" (from a random sample of {stats.count:,} rows)" if stats.sampled else ""
    total = f"{stats.total_estimate:,}" if stats.total_estimate is not None else MISSING
    line = (
        f"{_label(f'Tokens{sampled}', markdown)} min {stats.min} · median {stats.median} · "
        f"mean {stats.mean} · p95 {stats.p95} · max {stats.max} · ≈{total} in total"
    )
    if stats.chunks_estimate is not None and stats.over_max_seq_len:
        line += (
            f" · {stats.over_max_seq_len:,} documents longer than max_seq_len are split, "
            f"≈{stats.chunks_estimate:,} training chunks in all (none of the text is cut)"
        )
    elif stats.over_max_seq_len:
        line += f" · {stats.over_max_seq_len:,} rows longer than max_seq_len are truncated"
    return line


def issue_counts(counts: dict[str, int]) -> str:
    """ "invalid × 3, duplicate × 1"."""
    return ", ".join(f"{kind} × {n:,}" for kind, n in counts.items())


def issues_not_shown(counts: dict[str, int], kept: int, shown: int) -> int:
    """How many issues a list of the first ``shown`` of ``kept`` issues leaves out."""
    return sum(counts.values()) - min(shown, kept)


def split_line(rows: int, train_rows: int, eval_rows: int, data_format: str) -> str:
    """ "20 rows (16 train, 4 eval), format alpaca"."""
    return f"{rows:,} rows ({train_rows:,} train, {eval_rows:,} eval), format {data_format}"


# Chat --------------------------------------------------------------------------------------


class AnswerFigures(Protocol):
    """What an answer-stats line shows (``services.chat.ChatStats`` has these)."""

    @property
    def tokens(self) -> int: ...
    @property
    def tokens_per_second(self) -> float | None: ...
    @property
    def ttft_s(self) -> float | None: ...
    @property
    def energy_kwh(self) -> float | None: ...
    @property
    def backend(self) -> str: ...
    @property
    def finish_reason(self) -> str | None: ...


def answer_stats(stats: AnswerFigures, *, markdown: bool = False) -> str:
    """ "42 tokens · 27.3 tok/s · first token 0.08 s · energy 35.2 mWh · transformers"."""
    tokens, speed = str(stats.tokens), f"{stats.tokens_per_second or 0:.1f}"
    backend = stats.backend
    if markdown:
        tokens, speed, backend = f"**{tokens}**", f"**{speed}**", f"`{backend}`"
    first_token = number(stats.ttft_s, "{:.2f} s")
    stopped = " · stopped" if stats.finish_reason == "abort" else ""
    return (
        f"{tokens} tokens · {speed} tok/s · first token {first_token} · "
        f"energy {energy(stats.energy_kwh)} · {backend}{stopped}"
    )


# Carbon ------------------------------------------------------------------------------------


def run_name(label: str | None, ref_id: str | None, record_id: str) -> str:
    """What a carbon record is called: its label, else what it measured, else its id."""
    return label or ref_id or record_id


def grid_label(country_iso_code: str | None, region: str | None) -> str:
    """ "USA/california", "FRA"; "" when unknown."""
    if not country_iso_code:
        return ""
    return f"{country_iso_code}/{region}" if region else country_iso_code


def carbon_status(status: str, unavailable_reason: str | None) -> str:
    """ "final", "running", "interrupted", or "unavailable: <why>"."""
    return f"unavailable: {unavailable_reason}" if status == "unavailable" else status


def carbon_totals_line(
    runs: int, energy_kwh: float, emissions_kg: float, unavailable: int = 0, scope: str = ""
) -> str:
    """ "2 runs since 2025-01-01: 0.512 Wh, 0.120 g CO₂e (1 without carbon data)"."""
    line = f"{runs} runs{scope}: {energy(energy_kwh)}, {co2(emissions_kg)} CO₂e"
    return line + (f" ({unavailable} without carbon data)" if unavailable else "")


def carbon_so_far(energy_kwh: float | None, emissions_kg: float | None) -> str:
    """ "0.512 Wh so far, 0.120 g CO₂e"."""
    return f"{energy(energy_kwh)} so far, {co2(emissions_kg)} CO₂e"


def synthesis_cost(energy_kwh: float | None, emissions_kg: float | None, *, remote: bool) -> str:
    """ "0.395 Wh, 70.8 mg CO₂e"; why it is unknown otherwise."""
    if remote:
        return "unknown: remote teacher"
    if energy_kwh is None:
        return "unknown: not metered"
    return f"{energy(energy_kwh)}, {co2(emissions_kg)} CO₂e"


def intensity(kg_per_kwh: float) -> str:
    """ "254 g CO₂e/kWh"."""
    return f"{kg_per_kwh * 1000:.0f} g CO₂e/kWh"


def significant(value: float | None, digits: int = 4) -> float | None:
    """A number rounded to ``digits`` significant digits, for tables: 0.000123456 -> 0.0001235."""
    return None if value is None else float(f"{value:.{digits}g}")


# Training ----------------------------------------------------------------------------------


def job_steps(job: JobView) -> str:
    """ "step 3/10" ("step 3/?" while the total is unknown)."""
    return f"step {job.step}/{job.total_steps or '?'}"


def job_facts(job: JobView) -> list[str]:
    """The known ones of: ETA (while active), loss, tokens/s, energy, CO₂."""
    facts = []
    if job.active and job.eta_s:
        facts.append(f"ETA {duration(job.eta_s)}")
    if job.loss is not None:
        facts.append(f"loss {number(job.loss)}")
    if job.tokens_per_second:
        facts.append(f"{job.tokens_per_second:,.0f} tokens/s")
    if job.energy_kwh is not None:
        facts.append(f"energy {energy(job.energy_kwh)}")
    if job.emissions_kg is not None:
        facts.append(f"CO₂ {co2(job.emissions_kg)}")
    return facts


def job_budget(job: JobView) -> list[str]:
    """ "time 4.8 min", "CO₂ 0.5 g", "112 steps fitted", "forecast 4 min 40 s, 1.2 Wh, 0.3 g CO₂"
    for a budgeted run (nothing otherwise)."""
    facts = []
    if job.time_budget_s is not None:
        facts.append(f"time {duration(job.time_budget_s)}")
    if job.co2_budget_g is not None:
        facts.append(f"CO₂ {job.co2_budget_g:g} g")
    if facts and job.budget_steps is None:
        facts.append("steps fitted after a short probe")
    if job.budget_steps is not None:
        facts.append(f"{job.budget_steps} steps fitted")
    if job.forecast_s is not None:
        forecast = [duration(job.forecast_s)]
        if job.forecast_kwh is not None:
            forecast.append(energy(job.forecast_kwh))
        if job.forecast_co2_kg is not None:
            forecast.append(f"CO₂ {co2(job.forecast_co2_kg)}")
        facts.append("forecast " + ", ".join(forecast))
    return facts


def job_preference(job: JobView) -> list[str]:
    """ "DPO from job-…", "reward margin 0.41", "pairs ranked right 75 %" for preference runs."""
    if job.objective == "sft":
        return []
    facts = [job.objective.upper() + (f" from {job.init_from_run}" if job.init_from_run else "")]
    if job.reward_margin is not None:
        facts.append(f"reward margin {number(job.reward_margin)}")
    if job.reward_accuracy is not None:
        facts.append(f"pairs ranked right {100 * job.reward_accuracy:.0f} %")
    if job.reward_mean is not None:
        each = ", ".join(
            f"{name} {number(v)}" for name, v in (job.rewards_by_function or {}).items()
        )
        facts.append(f"mean reward {number(job.reward_mean)}" + (f" ({each})" if each else ""))
    return facts


def sample_table(job: JobView, chars: int = 300) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of a GRPO run's sampled completions: step, prompt, completion (each cut
    to ``chars``), one column per reward function, the weighted total."""
    names = list(dict.fromkeys(name for sample in job.samples for name in sample.rewards))
    rows = [
        [
            str(sample.step),
            _cut(sample.prompt, chars),
            _cut(sample.completion, chars),
            *(number(sample.rewards.get(name), "{:.2f}") for name in names),
            number(sample.total, "{:.2f}"),
        ]
        for sample in job.samples
    ]
    return ["step", "prompt", "completion", *names, "total"], rows


def _cut(text: str, chars: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= chars else flat[: chars - 1] + "…"


def job_stats_line(job: JobView, separator: str = " · ") -> str:
    """ "step 3/10 · ETA 42s · loss 1.2345 · 120 tokens/s · energy 0.512 Wh · CO₂ 0.120 g"."""
    return separator.join([job_steps(job), *job_facts(job)])


def job_layout(job: JobView) -> list[str]:
    """ "DDP × 4 processes (2 machines)" and "global batch 32" for a multi-process run, else []."""
    if job.processes <= 1 or not job.strategy:
        return []
    machines = f" ({job.machines} machines)" if job.machines > 1 else ""
    facts = [f"{job.strategy.upper()} × {job.processes} processes{machines}"]
    if job.global_batch:
        facts.append(f"global batch {job.global_batch}")
    return facts


# The default model -------------------------------------------------------------------------


def preparing_default(step: str, elapsed_s: float) -> str:
    """What a Start pressed while the embedded default model is converted says meanwhile."""
    doing = f": {step.rstrip('…. ')}" if step else ""
    return (
        f"⏳ **Preparing the default model** (first start only, usually 30–60 s; "
        f"{duration(elapsed_s)} so far){doing}… The run starts by itself when it is ready."
    )


def quant_cost(cost: QuantCost) -> str:
    """One line: the GGUF's ROUGE-L next to the unquantized model's, on the same prompts."""
    return (
        f"Quality on {cost.prompts} held-out prompts (greedy): ROUGE-L "
        f"{number(cost.rouge_l_unquantized, '{:.3f}')} unquantized, "
        f"{number(cost.rouge_l_quantized, '{:.3f}')} as {cost.quant}; "
        f"{cost.same_answers}/{cost.prompts} answers word for word alike "
        f"(checked in {duration(cost.seconds)})"
    )
