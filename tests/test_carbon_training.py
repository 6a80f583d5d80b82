"""A real LoRA training run of the default model, metered in a spawned worker process; the
records it leaves feed the Carbon tab, the CLI and the browser."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import running_app

from garden.config import Settings
from garden.engine.carbon import CarbonMeter, get_record, list_readings
from garden.services import carbon as carbon_service
from garden.store import get_store, new_id, now

ROOT = Path(__file__).resolve().parent.parent
FACTS = ROOT / "assets" / "datasets" / "garden_facts.jsonl"
STEPS = 4


def train_worker(
    model_path: str, storage_root: str, models_dir: str, job_id: str, queue: Any
) -> None:
    """Spawned worker: a few real LoRA steps under a CarbonMeter; readings go to ``queue``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    settings = Settings(
        _env_file=None,
        storage_root=storage_root,
        models_dir=models_dir,
        carbon_tracking_interval=0.5,
    )
    meter = CarbonMeter(
        kind="training",
        ref_id=job_id,
        label="moonwell-lora",
        settings=settings,
        on_reading=lambda r: queue.put(("reading", r.ts, r.energy_kwh, r.cpu_power_w)),
    )
    started = time.time()
    meter.start()
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0)
    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model = get_peft_model(base, lora)
    texts = []
    for line in FACTS.read_text(encoding="utf-8").splitlines()[:8]:
        messages = json.loads(line)["messages"]
        texts.append(f"Q: {messages[0]['content']}\nA: {messages[1]['content']}")
    batch = tokenizer(texts[:4], return_tensors="pt", padding=True, truncation=True, max_length=32)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    queue.put(("train_start", time.time(), time.time() - started))
    model.train()
    for _ in range(STEPS):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        queue.put(("step", time.time(), float(loss.detach()), meter.snapshot().energy_kwh))
    queue.put(("train_end", time.time()))
    model.eval()
    held_out = tokenizer(
        texts[4:], return_tensors="pt", padding=True, truncation=True, max_length=32
    )
    held_labels = held_out["input_ids"].masked_fill(held_out["attention_mask"] == 0, -100)
    with torch.no_grad():
        eval_loss = float(model(**held_out, labels=held_labels).loss)
    record = meter.stop()
    queue.put(("done", record.energy_kwh, record.emissions_kg, eval_loss, meter.emission_id))


@pytest.fixture(scope="module")
def carbon_storage(module_tmp: Path, default_model_path: Path) -> Iterator[dict[str, Any]]:
    """A storage root holding one real metered training job and one metered chat-like session."""
    root = module_tmp / "storage"
    models_dir = default_model_path.parent.parent
    settings = Settings(
        _env_file=None, storage_root=root, models_dir=models_dir, carbon_tracking_interval=0.5
    )
    settings.ensure_storage()
    job_id = new_id("job")
    get_store(settings.db_path).insert(
        "jobs",
        {
            "id": job_id,
            "name": "moonwell-lora",
            "status": "running",
            "spec_json": {"method": "lora", "steps": STEPS},
            "created_at": now(),
        },
    )
    queue = mp.get_context("spawn").Queue()
    worker = mp.get_context("spawn").Process(
        target=train_worker,
        args=(str(default_model_path), str(root), str(models_dir), job_id, queue),
    )
    worker.start()
    events: list[tuple] = []
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            event = queue.get(timeout=5)
        except Exception:
            if not worker.is_alive():
                break
            continue
        events.append(event)
        if event[0] == "done":
            break
    worker.join(60)
    done = [e for e in events if e[0] == "done"]
    assert done, f"worker failed (exit code {worker.exitcode}); events: {events[-5:]}"
    _, energy, emissions, eval_loss, emission_id = done[0]
    get_store(settings.db_path).update(
        "jobs",
        job_id,
        {
            "status": "completed",
            "finished_at": now(),
            "result_json": {
                "final_eval_loss": eval_loss,
                "energy_kwh": energy,
                "emissions_kg": emissions,
            },
        },
    )
    with CarbonMeter(kind="chat", ref_id="engine-test", label="chat session", settings=settings):
        end = time.time() + 1.5
        while time.time() < end:
            sum(i * i for i in range(5000))
    yield {
        "settings": settings,
        "events": events,
        "job_id": job_id,
        "emission_id": emission_id,
        "eval_loss": eval_loss,
        "models_dir": models_dir,
    }


@pytest.mark.slow
def test_live_readings_arrive_during_training(carbon_storage: dict[str, Any]) -> None:
    events = carbon_storage["events"]
    start = next(e[1] for e in events if e[0] == "train_start")
    end = next(e[1] for e in events if e[0] == "train_end")
    during = [e for e in events if e[0] == "reading" and start <= e[1] <= end]
    assert len(during) >= 2, events
    assert during[-1][2] > 0 and during[-1][3] > 0
    steps = [e for e in events if e[0] == "step"]
    assert len(steps) == STEPS
    assert steps[-1][3] >= steps[0][3] > 0  # snapshot energy grows during the run

    settings = carbon_storage["settings"]
    record = get_record(carbon_storage["emission_id"], settings)
    assert record.status == "final" and record.kind == "training"
    assert record.ref_id == carbon_storage["job_id"]
    assert record.energy_kwh > 0 and record.emissions_kg > 0
    assert record.data["pid"] != os.getpid()
    assert len(list_readings(record.id, settings)) >= len(during)


@pytest.mark.slow
def test_tab_view_and_csv_with_real_records(carbon_storage: dict[str, Any], tmp_path: Path) -> None:
    from garden.ui.carbon_tab import Filters, render

    settings = carbon_storage["settings"]
    view = render(Filters("Last 24 hours", "All", "", "FRA", "", 1.0), settings)
    assert "All time | 2 |" in view.totals and "Last 24 hours | 2 |" in view.totals
    assert len(view.table) == 2
    assert set(view.table["kind"]) == {"training", "chat"}
    assert list(view.table["run"]) == ["chat session", "moonwell-lora"]
    scatter = view.loss_vs_co2.data[0]
    assert list(scatter.y) == [pytest.approx(carbon_storage["eval_loss"])]
    assert {trace.name for trace in view.per_run.data} == {
        "training CO₂e (g)",
        "chat CO₂e (g)",
    }
    assert "estimated" in view.about or "measured" in view.about
    assert "what-if grid **FRA**, PUE 1" in view.about
    only_training = render(Filters("All time", "training", "", None, None, 1.0), settings)
    assert list(only_training.table["kind"]) == ["training"]
    searched = render(Filters("All time", "All", "MOONWELL", None, None, 1.0), settings)
    assert [row.label for row in searched.rows] == ["moonwell-lora"]

    path = carbon_service.export_csv(view.rows, settings=settings)
    assert carbon_service.read_csv(path) == view.rows


@pytest.mark.slow
def test_cli_report_json_and_csv(carbon_storage: dict[str, Any], tmp_path: Path) -> None:
    settings = carbon_storage["settings"]
    env = {
        **os.environ,
        "STORAGE_ROOT": str(settings.storage_root),
        "MODELS_DIR": str(carbon_storage["models_dir"]),
        "COLUMNS": "200",
    }
    csv_path = tmp_path / "out" / "carbon.csv"
    cli = [sys.executable, "-c", "from garden.cli import main; main()", "carbon", "report"]
    out = subprocess.run(
        [*cli, "--json", "--csv", str(csv_path)], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["totals"]["runs"] == 2
    assert data["totals"]["energy_kwh"] > 0
    assert [row.model_dump(mode="json") for row in carbon_service.read_csv(csv_path)] == (
        data["records"]
    )
    expected = carbon_service.report(settings=settings)
    assert data["records"] == [row.model_dump(mode="json") for row in expected.rows]
    assert data["totals"] == expected.summary.model_dump(mode="json")
    assert list(data) == ["since", "totals", "records"]

    text = subprocess.run([*cli, "--since", "2000-01-01"], env=env, capture_output=True, text=True)
    assert text.returncode == 0 and "2 runs" in text.stdout and "moonwell-lora" in text.stdout
    future = subprocess.run(
        [*cli, "--since", "2999-01-01", "--json"], env=env, capture_output=True, text=True
    )
    assert json.loads(future.stdout)["totals"]["runs"] == 0
    bad = subprocess.run([*cli, "--since", "last tuesday"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr


@pytest.mark.slow
def test_carbon_tab_renders_charts_in_the_browser(
    carbon_storage: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    settings = carbon_storage["settings"]
    env = {
        "STORAGE_ROOT": str(settings.storage_root),
        "MODELS_DIR": str(carbon_storage["models_dir"]),
    }
    with running_app(tmp_path, env) as app:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            # The app's timers keep Gradio's event stream open: wait for elements, not idle.
            page.goto(app.url, wait_until="domcontentloaded")
            page.get_by_role("tab", name="Carbon").click(timeout=60_000)
            totals = page.locator("#carbon-totals")
            totals.get_by_text("All time").wait_for(timeout=60_000)
            page.wait_for_function(
                "document.querySelectorAll('.js-plotly-plot').length >= 4", timeout=60_000
            )
            assert page.get_by_text("Quality per gram").count() >= 1
            assert page.get_by_text("moonwell-lora").count() >= 1
            page.get_by_role("button", name="Export CSV").click()
            page.get_by_text(".csv").first.wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "carbon.png"), full_page=True)
        finally:
            page.close()
