"""The Fine-tune tab: pick model, data and settings; start, follow, stop, cancel, resume runs.

The view follows the running job (or the one picked in the runs table) by polling the store
with a ``gr.Timer``, so reloading the page or opening a second browser shows the same run live.
"""

from __future__ import annotations

import time
from typing import Any

import gradio as gr

from garden.config import Settings
from garden.errors import GardenError

PRESET_NAMES = ("Quick CPU demo", "LoRA", "QLoRA")
FORM_FIELDS = (
    "base_model",
    "dataset",
    "name",
    "method",
    "epochs",
    "max_steps",
    "learning_rate",
    "lr_scheduler",
    "warmup_ratio",
    "batch_size",
    "gradient_accumulation",
    "max_seq_len",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "lora_target_modules",
    "assistant_only_loss",
    "packing",
    "eval_steps",
    "seed",
    "precision",
    "backend",
    "checkpoint_interval",
)
FOLLOW_ACTIVE = ""
RUN_COLUMNS = [
    "job",
    "name",
    "status",
    "started",
    "duration",
    "steps",
    "final loss",
    "eval loss",
    "energy (Wh)",
    "CO₂ (g)",
]


def _manager(settings: Settings) -> Any:
    from garden.engine.training import get_job_manager

    return get_job_manager(settings)


def _model_choices(settings: Settings) -> list[str]:
    from garden.models import list_models

    try:
        return [m.id for m in list_models(settings)]
    except GardenError:
        return []


def _dataset_choices(settings: Settings) -> list[tuple[str, str]]:
    try:
        from garden.data import dataset_choices

        return dataset_choices(settings)
    except GardenError:
        return []


def spec_from_form(values: dict[str, Any]) -> dict[str, Any]:
    """Turn form values into a job spec (blank optional numbers mean 'not set')."""
    spec: dict[str, Any] = {}
    optional_zero = {"max_steps", "eval_steps", "checkpoint_interval"}
    for key, value in values.items():
        if value is None or (isinstance(value, str) and not value.strip() and key != "dataset"):
            continue
        if key in optional_zero and not value:
            continue
        if key in {
            "max_steps",
            "eval_steps",
            "checkpoint_interval",
            "batch_size",
            "gradient_accumulation",
            "max_seq_len",
            "lora_r",
            "lora_alpha",
            "seed",
        } and isinstance(value, float):
            value = int(value)
        spec[key] = value
    return spec


def _fmt(value: Any, pattern: str = "{:.4f}") -> str:
    return "–" if value is None else pattern.format(value)


def _duration(row: dict[str, Any]) -> str:
    if not row.get("started_at"):
        return "–"
    end = row.get("finished_at") or time.time()
    seconds = int(end - row["started_at"])
    return f"{seconds // 60}m{seconds % 60:02d}s"


def runs_table(settings: Settings) -> list[list[Any]]:
    rows = []
    for job in _manager(settings).list(limit=50):
        result = job.get("result_json") or {}
        progress = job.get("progress_json") or {}
        energy = result.get("energy_kwh", progress.get("energy_kwh"))
        co2 = result.get("emissions_kg", progress.get("emissions_kg"))
        started = job.get("started_at") or job["created_at"]
        rows.append(
            [
                job["id"],
                job["name"],
                job["status"],
                time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
                _duration(job),
                result.get("steps", progress.get("step")),
                _fmt(result.get("final_loss", progress.get("loss"))),
                _fmt(result.get("final_eval_loss")),
                _fmt(energy * 1000 if energy is not None else None, "{:.3f}"),
                _fmt(co2 * 1000 if co2 is not None else None, "{:.3f}"),
            ]
        )
    return rows


def status_markdown(job: dict[str, Any] | None) -> str:
    if job is None:
        return "_No runs yet: pick a dataset and press **Start training**._"
    progress = job.get("progress_json") or {}
    result = job.get("result_json") or {}
    step, total = progress.get("step", 0), progress.get("total_steps") or 0
    pct = 100.0 * step / total if total else 0.0
    lines = [
        f"### {job['name']} · `{job['status']}`",
        f"<progress value='{step}' max='{total or 1}' style='width:100%'></progress> "
        f"step **{step}/{total or '?'}** ({pct:.0f} %)",
    ]
    facts = []
    if progress.get("eta_s") and job["status"] in ("running", "stopping"):
        facts.append(f"ETA {int(progress['eta_s'])} s")
    if progress.get("loss") is not None:
        facts.append(f"loss {progress['loss']:.4f}")
    if progress.get("tokens_per_second"):
        facts.append(f"{progress['tokens_per_second']:.0f} tokens/s")
    energy = result.get("energy_kwh", progress.get("energy_kwh"))
    co2 = result.get("emissions_kg", progress.get("emissions_kg"))
    if energy is not None:
        facts.append(f"energy {energy * 1000:.3f} Wh")
    if co2 is not None:
        facts.append(f"CO₂ {co2 * 1000:.3f} g")
    if facts:
        lines.append(" · ".join(facts))
    if job.get("backend"):
        lines.append(
            f"Backend **{job['backend']}** on {job.get('device') or '?'} — "
            f"{job.get('backend_reason') or ''}"
        )
    if result.get("output_dir") and job["status"] == "completed":
        lines.append(f"Model saved to `{result['output_dir']}` (listed in the Chat tab).")
    if job.get("error"):
        lines.append(f"> **{job.get('error_kind') or 'error'}**: {job['error']}")
    lines.append(f"<small>job `{job['id']}`</small>")
    return "\n\n".join(lines)


def curves(metrics: list[dict[str, Any]]) -> tuple[Any, Any]:
    """Plotly figures: train/eval loss, and learning rate, by step."""
    import plotly.graph_objects as go

    train = [(m["step"], m["loss"]) for m in metrics if m.get("loss") is not None]
    evals = [(m["step"], m["eval_loss"]) for m in metrics if m.get("eval_loss") is not None]
    lrs = [(m["step"], m["learning_rate"]) for m in metrics if m.get("learning_rate") is not None]
    loss = go.Figure()
    if train:
        loss.add_trace(go.Scatter(x=[s for s, _ in train], y=[v for _, v in train], name="train"))
    if evals:
        loss.add_trace(
            go.Scatter(
                x=[s for s, _ in evals], y=[v for _, v in evals], name="eval", mode="lines+markers"
            )
        )
    loss.update_layout(
        title="Loss", xaxis_title="step", height=300, margin={"l": 40, "r": 10, "t": 40, "b": 30}
    )
    lr = go.Figure()
    if lrs:
        lr.add_trace(go.Scatter(x=[s for s, _ in lrs], y=[v for _, v in lrs], name="lr"))
    lr.update_layout(
        title="Learning rate",
        xaxis_title="step",
        height=300,
        margin={"l": 40, "r": 10, "t": 40, "b": 30},
    )
    return loss, lr


def build(settings: Settings) -> None:
    from garden.engine.training import PRESETS

    _manager(settings)  # starting the manager marks runs left active by a dead app 'interrupted'
    gr.Markdown(
        "### Fine-tune\nPick a base model and a dataset, choose a preset, press **Start**. "
        "Runs keep going if you close the page; come back any time to follow them."
    )
    with gr.Row():
        preset = gr.Radio(list(PRESET_NAMES), value="Quick CPU demo", label="Preset")
        method = gr.Radio(["lora", "qlora", "full"], value="lora", label="Method")
    with gr.Row():
        base_model = gr.Dropdown(
            _model_choices(settings),
            value=None,
            label="Base model",
            allow_custom_value=True,
            info="Empty = the embedded default; a hub id also works",
        )
        dataset = gr.Dropdown(
            _dataset_choices(settings),
            label="Dataset",
            allow_custom_value=True,
            info="Imported in the Data tab, or a file path",
        )
        refresh_choices = gr.Button("↻", scale=0, min_width=40)
    with gr.Row():
        name = gr.Textbox(label="Run name", placeholder="automatic")
        epochs = gr.Number(3, label="Epochs", minimum=0)
        max_steps = gr.Number(0, label="Max steps (0 = use epochs)", precision=0, minimum=0)
        learning_rate = gr.Number(1e-3, label="Learning rate")
    with gr.Accordion("Advanced settings", open=False):
        with gr.Row():
            lr_scheduler = gr.Dropdown(
                ["cosine", "linear", "constant", "constant_with_warmup"],
                value="cosine",
                label="Scheduler",
            )
            warmup_ratio = gr.Number(0.03, label="Warmup ratio")
            batch_size = gr.Number(8, label="Batch size", precision=0, minimum=1)
            gradient_accumulation = gr.Number(1, label="Grad. accumulation", precision=0)
            max_seq_len = gr.Number(256, label="Max sequence length", precision=0)
        with gr.Row():
            lora_r = gr.Number(16, label="LoRA r", precision=0)
            lora_alpha = gr.Number(32, label="LoRA alpha", precision=0)
            lora_dropout = gr.Number(0.05, label="LoRA dropout")
            lora_target_modules = gr.Textbox("all-linear", label="Target modules")
        with gr.Row():
            assistant_only_loss = gr.Checkbox(True, label="Loss on assistant turns only")
            packing = gr.Checkbox(True, label="Packing (padding-free)")
            eval_steps = gr.Number(0, label="Eval every N steps (0 = at end)", precision=0)
            seed = gr.Number(42, label="Seed", precision=0)
        with gr.Row():
            precision = gr.Dropdown(
                ["auto", "bf16", "fp32", "fp16"], value="auto", label="Precision"
            )
            backend = gr.Dropdown(["auto", "trl_peft", "unsloth"], value="auto", label="Backend")
            checkpoint_interval = gr.Number(
                0, label="Checkpoint every N steps (0 = CHECKPOINT_INTERVAL)", precision=0
            )
    with gr.Row():
        start_btn = gr.Button("▶ Start training", variant="primary")
        stop_btn = gr.Button("⏸ Stop (save checkpoint)")
        cancel_btn = gr.Button("✖ Cancel", variant="stop")
        resume_btn = gr.Button("⟳ Resume")
    viewed = gr.Dropdown(
        [FOLLOW_ACTIVE],
        value=FOLLOW_ACTIVE,
        label="Showing run (empty = follow the active run)",
        allow_custom_value=True,
    )
    status = gr.Markdown(status_markdown(None), elem_id="finetune-status")
    with gr.Row():
        loss_plot = gr.Plot(label="Loss")
        lr_plot = gr.Plot(label="Learning rate")
    logs = gr.Textbox(label="Log", lines=8, max_lines=8, autoscroll=True, interactive=False)
    runs = gr.Dataframe(
        headers=RUN_COLUMNS, label="Runs (click one to see its curves)", interactive=False
    )

    form = [
        base_model,
        dataset,
        name,
        method,
        epochs,
        max_steps,
        learning_rate,
        lr_scheduler,
        warmup_ratio,
        batch_size,
        gradient_accumulation,
        max_seq_len,
        lora_r,
        lora_alpha,
        lora_dropout,
        lora_target_modules,
        assistant_only_loss,
        packing,
        eval_steps,
        seed,
        precision,
        backend,
        checkpoint_interval,
    ]
    preset_targets = {
        "method": method,
        "epochs": epochs,
        "max_steps": max_steps,
        "learning_rate": learning_rate,
        "lr_scheduler": lr_scheduler,
        "batch_size": batch_size,
        "gradient_accumulation": gradient_accumulation,
        "max_seq_len": max_seq_len,
        "lora_r": lora_r,
        "lora_alpha": lora_alpha,
    }

    def apply_preset(choice: str) -> list[Any]:
        values = PRESETS.get(choice, {})
        return [
            gr.update(value=values.get(key) or (0 if key == "max_steps" else None))
            if key in values
            else gr.update()
            for key in preset_targets
        ]

    def refresh_lists() -> tuple[Any, Any]:
        return (
            gr.update(choices=_model_choices(settings)),
            gr.update(choices=_dataset_choices(settings)),
        )

    def resolve_job(job_id: str | None) -> dict[str, Any] | None:
        manager = _manager(settings)
        if job_id:
            try:
                return manager.get(job_id)
            except GardenError:
                return None
        active = manager.active_job()
        if active is not None:
            return active
        recent = manager.list(limit=1)
        return recent[0] if recent else None

    def refresh(job_id: str | None, select: str | None = None) -> tuple[Any, ...]:
        job = resolve_job(job_id)
        table = runs_table(settings)
        choices = [FOLLOW_ACTIVE, *[row[0] for row in table]]
        pick = gr.update(choices=choices, value=select) if select else gr.update(choices=choices)
        if job is None:
            loss, lr = curves([])
            return status_markdown(None), loss, lr, "", table, pick
        manager = _manager(settings)
        loss, lr = curves(manager.metrics(job["id"]))
        tail = "\n".join(
            f"{time.strftime('%H:%M:%S', time.localtime(log['ts']))} {log['level']:7} "
            f"{log['message'].splitlines()[-1] if log['message'] else ''}"
            for log in manager.logs(job["id"], limit=60)
        )
        return status_markdown(job), loss, lr, tail, table, pick

    def start(*values: Any) -> tuple[Any, ...]:
        spec = spec_from_form(dict(zip(FORM_FIELDS, values, strict=True)))
        if not spec.get("dataset"):
            gr.Warning("Pick a dataset first (import one in the Data tab).")
            return ("> **Cannot start**: no dataset picked.", *refresh(None)[1:])
        try:
            job_id = _manager(settings).submit(spec)
        except GardenError as exc:
            gr.Warning(str(exc))
            box = f"> **Cannot start**: {exc.message}"
            if exc.hint:
                box += f"\n>\n> {exc.hint}"
            return (box, *refresh(None)[1:])
        gr.Info(f"Started {job_id}")
        return refresh(job_id, select=job_id)

    def act(action: str, job_id: str | None) -> tuple[Any, ...]:
        job = resolve_job(job_id)
        if job is None:
            gr.Warning("No run to act on.")
            return refresh(job_id)
        try:
            getattr(_manager(settings), action)(job["id"])
        except GardenError as exc:
            gr.Warning(str(exc))
        return refresh(job["id"])

    def pick_run(evt: gr.SelectData, table: Any) -> str:
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        try:
            return str(table.iloc[row, 0])
        except (AttributeError, IndexError, TypeError):
            return FOLLOW_ACTIVE

    view_outputs = [status, loss_plot, lr_plot, logs, runs, viewed]
    preset.change(apply_preset, preset, list(preset_targets.values()))
    refresh_choices.click(refresh_lists, None, [base_model, dataset])
    start_btn.click(start, form, view_outputs, api_name="start_training")
    stop_btn.click(lambda j: act("stop", j), viewed, view_outputs, api_name="stop_training")
    cancel_btn.click(lambda j: act("cancel", j), viewed, view_outputs, api_name="cancel_training")
    resume_btn.click(lambda j: act("resume", j), viewed, view_outputs, api_name="resume_training")
    viewed.change(refresh, viewed, view_outputs, show_progress="hidden")
    runs.select(pick_run, runs, viewed)
    timer = gr.Timer(2.0)
    timer.tick(refresh, viewed, view_outputs, show_progress="hidden", api_name="refresh_training")

    from gradio.context import Context

    root = Context.root_block
    if root is not None:
        root.load(refresh, viewed, view_outputs)
        root.load(refresh_lists, None, [base_model, dataset])
