"""Test set-up: offline hubs, one throw-away storage root per test session, the real default model.

The environment is set before any garden module reads its settings, so `get_settings()` in
engine code and in the app both point at the session's storage.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from worker_locks import lock_folder, machine_shared, machine_to_itself

SESSION_ROOT = Path(tempfile.mkdtemp(prefix="garden-tests-"))


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist the controller names the run (xdist would name it in its workers
    only), so that it can remove the workers' lock files when the run ends."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        config.option.testrunuid = config.option.testrunuid or uuid.uuid4().hex


def pytest_unconfigure(config: pytest.Config) -> None:
    """The session's models, runs and exports take 1–2 GB: leave no copy behind."""
    shutil.rmtree(SESSION_ROOT, ignore_errors=True)
    run_id = getattr(config.option, "testrunuid", None)
    if run_id and not hasattr(config, "workerinput"):
        shutil.rmtree(lock_folder(run_id), ignore_errors=True)


os.environ.update(
    {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "TOKENIZERS_PARALLELISM": "false",
        "STORAGE_ROOT": str(SESSION_ROOT / "storage"),
        "CARBON_TRACKING_INTERVAL": "1",
        # Runs are evaluated at their end only where a test asks (tests/test_evaluation.py).
        "EVAL_AFTER_TRAINING": "false",
        # The auto backend's int4 copy is built (~40 s of both cores) only where a test asks
        # (tests/test_fast_chat.py); elsewhere auto answers from transformers/vLLM.
        "ONNX_CHAT_ENABLED": "false",
    }
)
for name in [key for key in os.environ if key.startswith("CODECARBON_")]:
    del os.environ[name]

# Under pytest-xdist two workers share CI's two cores. With libgomp's default waits, a torch or
# vLLM thread spins at each barrier while its sibling waits for a core that the other worker's
# process holds: two 2-thread training processes at once each took 32 s a step of the default
# model (2.6 s alone, 3.5 s on one thread each). With passive waits they took 3.7 s. The workers'
# own processes wait passively; the session's app keeps the waits a user's app has (`app`).
USER_OMP_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# The session fixtures that a test session shares (one app, one browser, one short run): under
# pytest-xdist every module that uses any of them runs on the one worker that holds them.
SESSION_SHARED_FIXTURES = frozenset({"app", "browser", "newcomer_run", "short_run"})
SESSION_SHARED_GROUP = "session-shared"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Work units for pytest-xdist's ``loadgroup`` (pyproject's addopts: two workers for CI's two
    cores): a module stays on one worker, so its module fixtures are made once, and the modules
    that use the session's app, browser or short run all go to the same worker.

    xdist 3.8.0 reads a test's group from a ``@group`` suffix of its node id, which it writes to
    ``item._nodeid``; pytest 9.2 keeps the id in ``item._id``, so the suffix is written here."""
    from _pytest.nodeid import NodeId

    if not getattr(config.option, "loadgroup", False):
        return
    shared = {
        item.nodeid.split("::")[0]
        for item in items
        if SESSION_SHARED_FIXTURES.intersection(getattr(item, "fixturenames", ()))
    }
    for item in items:
        module = item.nodeid.split("::")[0]
        group = SESSION_SHARED_GROUP if module in shared else module
        item.add_marker(pytest.mark.xdist_group(group))
        item._id = NodeId.parse(f"{item.nodeid}@{group}")  # type: ignore[attr-defined]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[object]:
    """Under xdist a test outside the session-shared group (setup, call and teardown) runs beside
    the other worker's, except while the newcomer's budgeted run holds the machine."""
    if item.nodeid.endswith(f"@{SESSION_SHARED_GROUP}"):
        return (yield)
    with machine_shared():
        return (yield)


@pytest.fixture(scope="session")
def session_root() -> Path:
    return SESSION_ROOT


@pytest.fixture(scope="session")
def default_model_path() -> Path:
    """The embedded default model, converted once per test session (real weights)."""
    from garden.models import prepare_default_model

    return prepare_default_model()


@pytest.fixture(scope="module")
def module_tmp(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A folder for one test module's storage, runs and exports, removed when the module ends.

    CI's runner has a few GB of disk left after the install: the runs, merged models and GGUF
    files of every module do not fit at once (a run filled it at 88 %)."""
    path = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def isolated_settings(tmp_path: Path, default_model_path: Path):
    """Settings with a private storage root that still sees the session's prepared models."""
    from garden.config import Settings

    settings = Settings(
        _env_file=None,
        storage_root=tmp_path / "storage",
        models_dir=default_model_path.parent.parent,
    )
    settings.ensure_storage()
    return settings


def private_settings(root: Path, default_model_path: Path, **fields: Any) -> Any:
    """Settings on a storage of their own under ``root`` whose base model is the session's."""
    from garden.config import Settings

    settings = Settings(
        _env_file=None, storage_root=root / "storage", models_dir=root / "models", **fields
    )
    settings.ensure_storage()
    (settings.base_models_path / default_model_path.name).symlink_to(default_model_path)
    return settings


def insert_running_job(settings: Any, job_id: str, **fields: Any) -> Path:
    """A running job's row as the manager writes it (nothing trains); its flags folder."""
    from garden.store import get_store, now

    flags = settings.checkpoints_path / job_id
    row = {
        "id": job_id,
        "name": job_id,
        "status": "running",
        "spec_json": {"dataset": "x"},
        "checkpoint_dir": str(flags),
        "created_at": now(),
    }
    get_store(settings.db_path).insert("jobs", {**row, **fields})
    return flags


class Clock:
    """A clock that stands still until a test moves ``now`` (a stand-in for time.monotonic)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


FACTS = Path(__file__).resolve().parent.parent / "assets" / "datasets" / "garden_facts.jsonl"
SHORT_RUN = "short-run"
SHORT_RUN_PROMPTS = 4
SHORT_RUN_VALUES: dict[str, Any] = {
    "dataset": str(FACTS),
    "name": SHORT_RUN,
    "max_steps": 4,
    "batch_size": 4,
    "max_seq_len": 96,
    "learning_rate": 3e-3,
    "lora_r": 16,
    "lora_alpha": 32,
    "warmup_ratio": 0.0,
    "eval_steps": 2,
}


@dataclass
class ShortRun:
    """A completed short LoRA run and the settings of the storage that holds it."""

    settings: Any
    job: Any  # garden.services.training.JobView


@pytest.fixture(scope="session")
def short_run(tmp_path_factory: pytest.TempPathFactory, default_model_path: Path) -> ShortRun:
    """One real short LoRA run of the default model on the bundled facts, shared by the training
    service and evaluation tests (each run costs ~1 min of both cores on CI). The export tests
    keep a 3-step run of their own: a q4_1 copy of this 4-step, rank-16 run no longer says that
    Paris is the capital of France, which their Paris probe asks.

    Its storage evaluates runs at their end, as the app does when asked, and reports them to
    TensorBoard and MLflow (tests/test_trackers.py reads them back); tests that train more runs
    do so in storages of their own, so this one holds this run only."""
    from garden.services import training

    settings = private_settings(
        tmp_path_factory.mktemp("short-run"),
        default_model_path,
        eval_after_training=True,
        eval_max_prompts=SHORT_RUN_PROMPTS,
        eval_max_new_tokens=24,
        report_to="tensorboard,mlflow",
    )
    spec = training.build_spec(SHORT_RUN_VALUES, preset="Quick CPU demo")
    job = training.wait(training.submit(spec, settings=settings).id, timeout=900, settings=settings)
    logs = [line.message for line in training.logs(job.id, settings=settings)]
    assert job.status == "completed", (job.error, logs[-5:])
    return ShortRun(settings, job)


def copy_run(source: Any, target: Any, job_id: str) -> None:
    """A run's rows (job, evaluations, carbon record) in another storage; its model stays where
    it is (the job names its folder). The short run is shared by the session, and its storage
    holds it alone (other tests list its runs)."""
    from garden.store import get_store

    src, dst = get_store(source.db_path), get_store(target.db_path)
    dst.insert("jobs", src.get("jobs", job_id) or {})
    for table, column in (("evaluations", "job_id"), ("emissions", "ref_id")):
        for row in src.query(f"SELECT * FROM {table} WHERE {column} = ?", (job_id,)):
            dst.insert(table, row)


def greedy_reply_ids(model: Any, tokenizer: Any, question: str, max_new_tokens: int) -> list[int]:
    """The token ids a transformers model generates greedily after ``question`` (one user turn,
    through the chat template), special tokens and all."""
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return [int(token) for token in output[0, inputs["input_ids"].shape[1] :]]


ROOT = Path(__file__).resolve().parent.parent
APP_START_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningApp:
    """A real `app.py` process serving on a free loopback port."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@contextmanager
def running_app(
    workdir: Path, env: Mapping[str, str | None] | None = None, *args: str
) -> Iterator[RunningApp]:
    """Start `app.py` in ``workdir``; fail with its log unless it serves HTTP 200 in time. A
    variable set to None in ``env`` is left out of the app's environment."""
    port = free_port()
    log = workdir / "app.log"
    # An app's warm fork server imports the training stack (≈8 s of CPU) for runs that most
    # test apps never start: only apps that ask get one.
    merged: dict[str, str | None] = {**os.environ, "WARM_WORKERS": "false", **(env or {})}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--port", str(port), *args],
            cwd=workdir,
            env={key: value for key, value in merged.items() if value is not None},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    app = RunningApp(f"http://127.0.0.1:{port}/", port, process, log)
    try:
        status = None
        deadline = time.monotonic() + APP_START_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None and status != 200:
            try:
                status = httpx.get(app.url, timeout=2).status_code
            except httpx.TransportError:
                time.sleep(0.3)
        assert status == 200, f"the app did not come up (exit {process.poll()}):\n{app.log_tail()}"
        yield app
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


@pytest.fixture(scope="session")
def app(default_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """One app per test session on the session's storage, shared by the HTTP and browser tests;
    as a user gets it, with warm training workers and libgomp's waits as the user has them (the
    newcomer's budgeted run trains in it, with both cores to itself)."""
    env = {"WARM_WORKERS": "true", "OMP_WAIT_POLICY": USER_OMP_WAIT_POLICY}
    with running_app(tmp_path_factory.mktemp("app"), env) as running:
        yield running


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium, driven by Playwright, shared by every browser test of the session."""
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class NewcomerRun:
    """The Quick CPU demo run a newcomer starts from the untouched Fine-tune form."""

    job_id: str
    run_name: str
    dataset: str
    submitted_spec: dict[str, Any]
    preset_spec: dict[str, Any]


NEWCOMER_DATASET = "first-facts"


@pytest.fixture(scope="session")
def newcomer_run(app: RunningApp, browser: Any) -> NewcomerRun:
    """Clicked in the browser as a newcomer would: the bundled sample saved in the Data tab, then
    Start pressed on the Fine-tune form as it opens; waits for the run to end (no time asserted,
    the wait only turns a hang into a failure)."""
    from garden.engine.training import queries
    from garden.services import training
    from garden.store import get_store
    from garden.ui.finetune_tab import DEFAULT_PRESET

    # The run trains against its time budget: the other xdist worker waits meanwhile.
    with machine_to_itself():
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(app.url, wait_until="domcontentloaded")
            page.get_by_role("tab", name="Data", exact=True).click(timeout=60_000)
            page.locator("#data-name textarea, #data-name input").first.fill(NEWCOMER_DATASET)
            page.locator("#data-save").click()
            page.locator("#data-save-result").get_by_text("Saved").wait_for(timeout=300_000)

            page.get_by_role("tab", name="Fine-tune", exact=True).click()
            page.locator("#ft-dataset input").click()
            page.get_by_role("option", name=NEWCOMER_DATASET).first.click(timeout=60_000)
            page.locator("#ft-start").click()
            # The auto run name carries the dataset's: this run, not one an earlier test started.
            run_name = f"-{NEWCOMER_DATASET}-"
            page.locator("#finetune-status").get_by_text(run_name).first.wait_for(timeout=600_000)
        finally:
            # A page re-drawing its charts meanwhile would take steps from the budgeted run on
            # 2 cores. The page is opened again once the run has ended.
            page.close()

        from garden.config import get_settings

        store = get_store(get_settings().db_path)
        started = next(job for job in queries.list_jobs(store, limit=20) if run_name in job.name)
        deadline = time.monotonic() + 1800
        while training.get(started.id).active and time.monotonic() < deadline:
            time.sleep(2)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(app.url, wait_until="domcontentloaded")
        page.get_by_role("tab", name="Fine-tune", exact=True).click(timeout=60_000)
        status = page.locator("#finetune-status")
        status.get_by_text(started.name).first.wait_for(timeout=120_000)
        status.locator("code", has_text="completed").or_(
            status.get_by_text("failed")
        ).first.wait_for(timeout=120_000)
    finally:
        page.close()

    job = queries.get_job(store, started.id)
    view = training.get(job.id)
    assert view.status == "completed", (view.error, app.log_tail())
    submitted = job.spec.model_dump() if job.spec else {}
    preset = training.build_spec({"dataset": submitted.get("dataset")}, preset=DEFAULT_PRESET)
    return NewcomerRun(job.id, view.name, NEWCOMER_DATASET, submitted, preset.model_dump())
