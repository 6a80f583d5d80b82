"""The Fine-tune tab: pick model, data and settings; start, follow, stop, cancel, resume runs.

How a run reads (status, table row, log) is in ``garden.ui.run_status``.

The view follows the running job (or the one picked in the runs table) by polling
``garden.services.training`` with a ``gr.Timer``, so reloading the page or opening a second
browser shows the same run live.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

import gradio as gr
from gradio.components import Component

from garden import present
from garden.config import TRACKERS, Settings
from garden.services import models, run_plan, training
from garden.services.training import JobView
from garden.ui.boundary import OnShow, guard, plain, report, visitor
from garden.ui.compare_panel import ComparePanel
from garden.ui.evaluate_panel import EvaluatePanel
from garden.ui.export_panel import ExportPanel
from garden.ui.run_charts import curves
from garden.ui.run_samples import samples_update
from garden.ui.run_status import (  # re-exported: tests read a run's status from this tab
    log_tail,
    run_row,
    status_markdown,
)
from garden.ui.run_view import FOLLOW_ACTIVE, RunView, pick_run, run_view

DEFAULT_PRESET = "Quick CPU demo"
UNSET_BY_ZERO = {"max_steps", "eval_steps", "checkpoint_interval", "time_budget_s", "co2_budget_g"}
# Start's inputs after FORM_FIELDS (with defaults, so API callers may leave them out).
PREFERENCE_FIELDS = ("objective", "beta", "init_from_run")
BUDGET_FIELDS = ("time_budget_min", "co2_budget_g")
GRPO_FIELDS = ("num_generations", "max_completion_length", "generation_temperature", "rewards")
TRACKER_FIELDS = ("report_to",)
REWARDS_INFO = (
    "GRPO: one reward a line, KIND[=ARG][*WEIGHT]: number_match, exact_match (against the "
    "reference answer), regex=PATTERN, json[={schema}], tool_call, length=MIN-MAX, "
    "judge[=CRITERION] (EVAL_JUDGE_URL scores 0-10) or judge=URL|MODEL|CRITERION"
)
NOT_PRESET = {"base_model", "dataset", "name", "init_from_run"}  # a preset leaves them as they are
SWITCHES = ("assistant_only_loss", "torch_compile", "int8_matmuls")  # auto/on/off in the form
AUTO_SENT = {"torch_compile"}  # switches whose auto is not the spec's default, so it is sent
SCHEDULERS = ["cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts"]
LOSS_INFO = "auto = on for chat data, off for plain text"
COMPILE_INFO = "torch.compile, SFT on a CPU: ≈1.2x faster bf16 steps; auto = runs over 5 min"
INT8_INFO = "SFT LoRA in fp32 on a CPU: frozen weights multiply in int8, ≈1.2x faster; auto = on"


@dataclass(init=False)
class RunForm:
    """The run settings: each field a component named after the ``JobSpec`` field it sets."""

    base_model: gr.Dropdown
    dataset: gr.Dropdown
    name: gr.Textbox
    method: gr.Radio
    epochs: gr.Number
    max_steps: gr.Number
    learning_rate: gr.Number
    lr_scheduler: gr.Dropdown
    warmup_ratio: gr.Number
    batch_size: gr.Number
    gradient_accumulation: gr.Number
    max_seq_len: gr.Number
    lora_r: gr.Number
    lora_alpha: gr.Number
    lora_dropout: gr.Number
    lora_target_modules: gr.Textbox
    assistant_only_loss: gr.Dropdown
    packing: gr.Checkbox
    torch_compile: gr.Dropdown
    int8_matmuls: gr.Dropdown
    eval_steps: gr.Number
    seed: gr.Number
    precision: gr.Dropdown
    backend: gr.Dropdown
    checkpoint_interval: gr.Number
    num_processes: gr.Number
    strategy: gr.Dropdown

    def __init__(self, settings: Settings) -> None:
        """Lay the form out: preset, model and data, then the settings (advanced ones folded).

        Every field opens with the shown preset's value (``training.preset_values``)."""
        self.shown = v = form_values(training.preset_values(DEFAULT_PRESET))
        with gr.Row():
            self.preset = gr.Radio(
                [p.name for p in training.presets()], value=DEFAULT_PRESET, label="Preset"
            )
            self.method = gr.Radio(["lora", "qlora", "full"], value=v["method"], label="Method")
            self.objective = gr.Radio(
                ["sft", "dpo", "orpo", "kto", "grpo"],
                value=v["objective"],
                label="Objective",
                info="Offered as the dataset fits: SFT and GRPO on chats, DPO/ORPO on pairs, "
                "KTO on labelled answers",
            )
        with gr.Row():
            self.base_model = gr.Dropdown(
                training.base_model_choices(settings=settings),
                value=None,
                label="Base model",
                allow_custom_value=True,
                info="Empty = the embedded default; a listed model or a hub id (org/name)",
            )
            self.dataset = gr.Dropdown(
                training.dataset_choices(settings=settings),
                label="Dataset",
                allow_custom_value=True,
                info="Imported in the Data tab (upload files there)",
                elem_id="ft-dataset",
            )
            self.refresh_choices = gr.Button("↻", scale=0, min_width=40)
        with gr.Row():
            self.name = gr.Textbox(label="Run name", placeholder="automatic")
            self.epochs = self._num("epochs", "Epochs", minimum=0)
            self.max_steps = self._num(
                "max_steps", "Max steps (0 = use epochs)", precision=0, minimum=0
            )
            self.learning_rate = self._num("learning_rate", "Learning rate")
        with gr.Row():
            none = {"minimum": 0, "info": "0 = none"}
            self.time_budget_min = self._num("time_budget_min", "Time budget (min)", **none)
            self.co2_budget_g = self._num("co2_budget_g", "CO₂ budget (g)", **none)
            self.beta = self._num("beta", "Beta (DPO/KTO; ORPO lambda)", minimum=0)
            self.init_from_run = gr.Textbox(
                "", label="Start from run", placeholder="a completed run's id (SFT then DPO)"
            )
        grpo = gr.Accordion("GRPO: rewards and sampling", open=v["objective"] == "grpo")
        with grpo, gr.Row():
            self.rewards = gr.Textbox(
                v["rewards"], label="Rewards", lines=3, info=REWARDS_INFO, scale=3
            )
            self.num_generations = self._num(
                "num_generations", "Completions per prompt", precision=0, minimum=2
            )
            self.max_completion_length = self._num(
                "max_completion_length", "Max completion tokens", precision=0, minimum=4
            )
            self.generation_temperature = self._num(
                "generation_temperature", "Temperature", minimum=0.05
            )
        with gr.Accordion("Advanced settings", open=False):
            self._advanced()
            self.report_to = gr.CheckboxGroup(
                list(TRACKERS),
                value=list(settings.trackers),
                label="Experiment trackers",
                info="Checked as REPORT_TO sets them (on a public demo, the owner's choice)",
                interactive=not settings.public_demo,
            )

    def _num(self, name: str, label: str, **options: Any) -> gr.Number:
        """A number field opening with the shown preset's value of ``name``."""
        return gr.Number(self.shown[name], label=label, **options)

    def _pick(self, name: str, choices: list[str], label: str, **options: Any) -> gr.Dropdown:
        return gr.Dropdown(choices, value=self.shown[name], label=label, **options)

    def _advanced(self) -> None:
        num, pick = self._num, self._pick
        with gr.Row():
            self.lr_scheduler = pick("lr_scheduler", SCHEDULERS, "Scheduler")
            self.warmup_ratio = num("warmup_ratio", "Warmup ratio")
            self.batch_size = num("batch_size", "Batch size", precision=0, minimum=1)
            self.gradient_accumulation = num(
                "gradient_accumulation", "Grad. accumulation", precision=0
            )
            self.max_seq_len = num("max_seq_len", "Max sequence length", precision=0)
        with gr.Row():
            self.lora_r = num("lora_r", "LoRA r", precision=0)
            self.lora_alpha = num("lora_alpha", "LoRA alpha", precision=0)
            self.lora_dropout = num("lora_dropout", "LoRA dropout")
            self.lora_target_modules = gr.Textbox(
                self.shown["lora_target_modules"], label="Target modules"
            )
        with gr.Row():
            loss = {"info": LOSS_INFO, "allow_custom_value": True}  # API callers send booleans
            switch = list(training.SWITCH_CHOICES)
            self.assistant_only_loss = pick(
                "assistant_only_loss", switch, "Loss on assistant turns only", **loss
            )
            self.packing = gr.Checkbox(self.shown["packing"], label="Packing (padding-free)")
            compiling = {"info": COMPILE_INFO, "allow_custom_value": True}
            self.torch_compile = pick("torch_compile", switch, "Compile", **compiling)
            self.eval_steps = num("eval_steps", "Eval every N steps (0 = at end)", precision=0)
            self.seed = num("seed", "Seed", precision=0)
        with gr.Row():
            self.precision = pick("precision", ["auto", "bf16", "fp32", "fp16"], "Precision")
            int8 = {"info": INT8_INFO, "allow_custom_value": True}
            self.int8_matmuls = pick("int8_matmuls", switch, "Int8 frozen weights", **int8)
            self.backend = pick("backend", ["auto", "trl_peft", "unsloth"], "Backend")
            every = "Checkpoint every N steps (0 = CHECKPOINT_INTERVAL)"
            self.checkpoint_interval = num("checkpoint_interval", every, precision=0)
        with gr.Row():
            self.num_processes = num("num_processes", "Processes", precision=0, minimum=1)
            self.strategy = pick("strategy", ["auto", "ddp", "fsdp", "deepspeed"], "Strategy")

    def components(self) -> list[Component]:
        """The setting components, in ``FORM_FIELDS``, ``PREFERENCE_FIELDS``, ``BUDGET_FIELDS``,
        ``GRPO_FIELDS`` then ``TRACKER_FIELDS`` order (the API order of Start)."""
        return [getattr(self, name) for name in START_FIELDS]

    def component(self, name: str) -> Component:
        return getattr(self, name)


FORM_FIELDS = tuple(field.name for field in fields(RunForm))
START_FIELDS = (*FORM_FIELDS, *PREFERENCE_FIELDS, *BUDGET_FIELDS, *GRPO_FIELDS, *TRACKER_FIELDS)


def form_values(values: dict[str, Any]) -> dict[str, Any]:
    """Spec values as the form's components show them (the inverse of ``spec_values``)."""
    shown: dict[str, Any] = {}
    for key, value in values.items():
        if key == "time_budget_s":
            shown["time_budget_min"] = 0 if value is None else value / 60
        elif key in SWITCHES:
            shown[key] = next(name for name, on in training.SWITCH_CHOICES.items() if on is value)
        elif key == "lora_target_modules" and isinstance(value, list):
            shown[key] = ", ".join(value)
        elif key == "rewards":
            shown[key] = training.rewards_text(value or [])
        elif key in ("init_from_run", "name"):
            shown[key] = value or ""
        elif key == "report_to":  # None: REPORT_TO's trackers, which the form shows already
            shown.update({} if value is None else {key: list(value)})
        elif key in ("base_model", "dataset"):  # the default model shows as empty
            shown[key] = value if key == "dataset" else None
        else:
            shown[key] = 0 if value is None else value
    return {key: value for key, value in shown.items() if key in START_FIELDS}


def spec_values(values: dict[str, Any]) -> dict[str, Any]:
    """The form's values that set something: blanks, and 0 where the label says so, do not;
    minutes become seconds and auto/on/off the switches."""
    given: dict[str, Any] = {}
    for key, value in values.items():
        if key in SWITCHES and isinstance(value, str):
            value = training.SWITCH_CHOICES.get(value, value)
        if key == "time_budget_min":
            key, value = "time_budget_s", round(float(value) * 60, 3) if value else None
        if key == "rewards" and isinstance(value, str):
            value = training.parse_rewards(value) or None
        blank = value == "" or (value is None and key not in AUTO_SENT)
        if blank or (key in UNSET_BY_ZERO and not value):
            continue
        given[key] = value
    return given


class FineTuneTab:
    """The tab's event handlers over ``garden.services.training``."""

    def __init__(self, settings: Settings, form: RunForm, view: RunView) -> None:
        self.settings = settings
        self.form = form
        self.view = view
        keep = gr.update()
        self._guarded_lists = guard("listing models", lambda _: (keep, keep), settings)(self._lists)

    def apply_preset(self, choice: str) -> dict[Component, Any]:
        """Every setting of the form to preset ``choice`` (the spec's defaults where it sets
        none), so Start submits exactly that preset; model, data, name and start run stay."""
        if choice not in {preset.name for preset in training.presets()}:
            return {}
        shown = form_values(training.preset_values(choice))
        return {
            self.form.component(key): value for key, value in shown.items() if key not in NOT_PRESET
        }

    def fit_to_dataset(self, dataset: str | None, objective: str, preset: str) -> tuple[Any, Any]:
        """Offer the objectives and presets that fit the dataset's kind of rows."""
        fits = training.objectives_for(dataset or "", settings=self.settings)
        return (
            gr.update(
                choices=fits.objectives,
                value=objective if objective in fits.objectives else fits.objectives[0],
            ),
            gr.update(
                choices=fits.presets, value=preset if preset in fits.presets else fits.presets[0]
            ),
        )

    def follow_up(self, job_id: str | None) -> dict[Component, Any]:
        """Fill the form for a DPO run that starts from the viewed (completed) run."""
        try:
            values = training.follow_up_values(job_id, "dpo", settings=self.settings)
        except Exception as exc:  # the boundary: one line, trace to the log
            report(exc, "preparing a DPO run", self.settings)
            return {}
        if "dataset" not in values:
            gr.Warning("No preference dataset yet: import one (prompt/chosen/rejected) first.")
        shown = {self.form.component(k): v for k, v in form_values(values).items()}
        return {self.form.preset: values["preset"], **shown}

    def refresh_lists(self) -> tuple[Any, Any]:
        return self._guarded_lists()

    def guarded_panels(
        self, evaluate: EvaluatePanel, export: ExportPanel, compare: ComparePanel
    ) -> tuple[Any, Any, Any]:
        try:
            return evaluate.refresh_runs(), export.refresh_models(), compare.refresh_runs()
        except Exception as exc:  # the boundary: one line, trace to the log
            report(exc, "listing runs", self.settings)
            return gr.update(), gr.update(), gr.update()

    def _lists(self) -> tuple[Any, Any]:
        return (
            gr.update(choices=training.base_model_choices(settings=self.settings)),
            gr.update(choices=training.dataset_choices(settings=self.settings)),
        )

    def refresh(self, job_id: str | None, select: str | None = None) -> dict[Component, Any]:
        """The viewed run; on a failure the view is left as it is and the cause is reported."""
        try:
            return self._refresh(job_id, select)
        except Exception as exc:  # the boundary: one line, trace to the log
            report(exc, "showing the runs", self.settings)
            return {}

    def _refresh(self, job_id: str | None, select: str | None) -> dict[Component, Any]:
        job = training.current_or_latest(job_id, settings=self.settings)
        jobs = training.list_jobs(limit=50, settings=self.settings)
        choices = [FOLLOW_ACTIVE, *[listed.id for listed in jobs]]
        pick = gr.update(choices=choices, value=select) if select else gr.update(choices=choices)
        points = training.metrics(job.id, settings=self.settings) if job else []
        loss, lr = curves(points)
        status = status_markdown(job, self.settings)
        preparing = models.default_model_status(settings=self.settings)
        if preparing.state == "preparing":
            status = (
                present.preparing_default(preparing.step, preparing.elapsed_s) + "\n\n" + status
            )
        return {
            self.view.status: status,
            self.view.loss_plot: loss,
            self.view.lr_plot: lr,
            self.view.samples: samples_update(job),
            self.view.logs: log_tail(job.id, self.settings) if job else "",
            self.view.runs: [run_row(listed) for listed in jobs],
            self.view.viewed: pick,
        }

    def refused(self, message: str) -> dict[Component, Any]:
        return {**self.refresh(None), self.view.status: f"> **Cannot start**: {plain(message)}"}

    def submission(self, *values: Any) -> dict[str, Any]:
        """What Start submits (``START_FIELDS`` order); REPORT_TO's own trackers go unsaid."""
        given = dict(zip(START_FIELDS, values, strict=True))
        if set(given.get("report_to") or ()) == set(self.settings.trackers):
            given["report_to"] = None
        return spec_values(given)

    def start(self, *values: Any) -> Iterator[dict[Component, Any]]:
        """Start a run from the form: only an imported dataset and a listed or hub model.

        Pressed while the embedded default model is still being converted (the first minute of
        a fresh install), it says so at once, shows the conversion's progress, then starts."""
        try:
            given = self.submission(*values)
        except Exception as exc:  # a bad reward line: one line, trace to the log
            yield self.refused(report(exc, "reading the form", self.settings))
            return
        if "dataset" not in given:
            gr.Warning("Pick a dataset first (import one in the Data tab).")
            yield self.refused("no dataset picked.")
            return
        try:
            if given.get("base_model") in (None, "default", models.DEFAULT_MODEL_NAME):
                for status in models.wait_for_default(settings=self.settings):
                    yield {
                        self.view.status: present.preparing_default(status.step, status.elapsed_s)
                    }
            job = training.submit_from_web(given, settings=self.settings, visitor=visitor())
        except Exception as exc:  # the boundary: one line, trace to the log
            yield self.refused(report(exc, "starting the run", self.settings))
            return
        gr.Info(f"Started {job.id}")
        yield self.refresh(job.id, select=job.id)

    def check_plan(self, *values: Any) -> str:
        """What Start would do with the form (memory per process, gradient checkpointing,
        processes, a forecast from earlier runs, warnings), planned as a start plans it; nothing
        starts."""
        try:
            given = self.submission(*values)
            if "dataset" not in given:
                return "> **Cannot plan**: pick a dataset first (import one in the Data tab)."
            planned = run_plan.plan_from_web(given, settings=self.settings)
        except Exception as exc:  # the boundary: one line, trace to the log
            return f"> **Cannot plan**: {plain(report(exc, 'planning the run', self.settings))}"
        lines = [f"- {plain(line)}" for line in planned.lines()]
        lines += [f"- ⚠️ {plain(warning)}" for warning in planned.warnings]
        return "**The plan** (nothing was started):\n" + "\n".join(lines)

    def act(self, action: Callable[..., JobView], job_id: str | None) -> dict[Component, Any]:
        job = training.current_or_latest(job_id, settings=self.settings)
        if job is None:
            gr.Warning("No run to act on.")
            return self.refresh(job_id)
        try:
            action(job.id, settings=self.settings, visitor=visitor())
        except Exception as exc:  # the boundary: one line, trace to the log
            report(exc, f"{action.__name__} {job.id}", self.settings)
        return self.refresh(job.id)

    def stop(self, job_id: str | None) -> dict[Component, Any]:
        return self.act(training.stop, job_id)

    def cancel(self, job_id: str | None) -> dict[Component, Any]:
        return self.act(training.cancel, job_id)

    def resume(self, job_id: str | None) -> dict[Component, Any]:
        return self.act(training.resume, job_id)


def build(settings: Settings) -> OnShow:
    gr.Markdown(
        "### Fine-tune\nPick a base model and a dataset, choose a preset, press **Start**. "
        "Runs keep going if you close the page; come back any time to follow them."
    )
    form = RunForm(settings)
    with gr.Row():
        start_btn = gr.Button("▶ Start training", variant="primary", elem_id="ft-start")
        plan_btn = gr.Button("📋 Check the plan", elem_id="ft-plan")
        stop_btn = gr.Button("⏸ Stop (save checkpoint)")
        cancel_btn = gr.Button("✖ Cancel", variant="stop")
        resume_btn = gr.Button("⟳ Resume")
        dpo_btn = gr.Button("DPO from this run")
    plan_box = gr.Markdown("", elem_id="ft-plan-box")
    view = run_view()
    evaluate, export = EvaluatePanel(settings), ExportPanel(settings)
    compare = ComparePanel(settings)
    tab = FineTuneTab(settings, form, view)
    shown, choices = view.components(), [form.base_model, form.dataset]

    form.preset.change(tab.apply_preset, form.preset, form.components())
    form.refresh_choices.click(tab.refresh_lists, None, choices)
    form.dataset.change(
        tab.fit_to_dataset,
        [form.dataset, form.objective, form.preset],
        [form.objective, form.preset],
    )
    dpo_btn.click(tab.follow_up, view.viewed, [form.preset, *form.components()])
    start_btn.click(tab.start, form.components(), shown, api_name="start_training")
    plan_btn.click(tab.check_plan, form.components(), plan_box, api_name="plan_training")
    stop_btn.click(tab.stop, view.viewed, shown, api_name="stop_training")
    cancel_btn.click(tab.cancel, view.viewed, shown, api_name="cancel_training")
    resume_btn.click(tab.resume, view.viewed, shown, api_name="resume_training")
    view.viewed.change(tab.refresh, view.viewed, shown, show_progress="hidden")
    view.runs.select(pick_run, view.runs, view.viewed)
    timer = gr.Timer(2.0, active=False)  # ticks while the tab is open (garden.ui.build_app)
    timer.tick(tab.refresh, view.viewed, shown, show_progress="hidden", api_name="refresh_training")

    from gradio.context import Context

    root = Context.root_block
    if root is not None:
        root.load(tab.refresh, view.viewed, shown)
        root.load(tab.refresh_lists, None, choices)

    def opened() -> tuple[Any, ...]:
        """Every list of the tab, as it is now (a run may have finished since the page loaded)."""
        return (*tab.refresh_lists(), *tab.guarded_panels(evaluate, export, compare))

    return OnShow(opened, [*choices, evaluate.run, export.model, compare.runs], (timer,))
