"""Settings from env and .env, storage layout, and store migrations."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from garden.config import Settings, load_settings
from garden.errors import ConfigError
from garden.store import MIGRATIONS, SCHEMA_VERSION, TABLES, Store, new_id


def test_settings_defaults_match_design(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("STORAGE_ROOT", "CARBON_TRACKING_INTERVAL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.storage_root == Path("./storage")
    assert settings.api_host == "127.0.0.1" and settings.api_port == 7860
    assert settings.max_concurrent_jobs == 1 and settings.checkpoint_interval == 100
    assert settings.vllm_gpu_memory_utilization == 0.9 and settings.vllm_max_num_seqs == 256
    assert settings.carbon_tracking_enabled and settings.carbon_tracking_interval == 15
    assert (settings.carbon_country_code, settings.carbon_region) == ("USA", "california")
    assert not settings.enable_auth


def test_settings_from_env_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "MAX_CONCURRENT_JOBS=3\nCARBON_COUNTRY_CODE=fra\nLOG_LEVEL=debug\nAPI_PORT=9000\n"
    )
    monkeypatch.setenv("API_PORT", "7999")  # the environment wins over .env
    settings = Settings()
    assert settings.max_concurrent_jobs == 3
    assert settings.carbon_country_code == "FRA"
    assert settings.log_level == "DEBUG"
    assert settings.api_port == 7999


def test_bad_settings_are_refused_with_the_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LOG_LEVEL", "LOUD")
    monkeypatch.chdir(tmp_path)  # no .env here
    with pytest.raises(ValidationError):
        Settings(_env_file=None)
    with pytest.raises(ConfigError, match=r"LOG_LEVEL: expected one of DEBUG.*\(got 'LOUD'\)"):
        load_settings()


def test_storage_layout_is_created(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, storage_root=tmp_path / "s")
    settings.ensure_storage()
    for sub in (
        "models/base",
        "models/finetuned",
        "datasets/raw",
        "datasets/processed",
        "logs",
        "checkpoints",
        "temp",
    ):
        assert (tmp_path / "s" / sub).is_dir(), sub
    assert settings.db_path == (tmp_path / "s" / "garden.db").resolve()


def test_store_migrates_empty_file_and_reopens(tmp_path: Path) -> None:
    db = tmp_path / "garden.db"
    db.touch()
    store = Store(db)
    assert store.schema_version() == SCHEMA_VERSION == len(MIGRATIONS)
    names = {
        row["name"] for row in store.query("SELECT name FROM sqlite_master WHERE type='table'")
    }
    assert set(TABLES) <= names
    assert store.query("PRAGMA journal_mode")[0]["journal_mode"] == "wal"
    store.insert(
        "jobs",
        {
            "id": "job-1",
            "name": "n",
            "status": "queued",
            "spec_json": {"lr": 1e-4},
            "created_at": 1.0,
        },
    )
    store.close()

    reopened = Store(db)
    assert reopened.migrate() == 0
    job = reopened.get("jobs", "job-1")
    assert job is not None and job["spec_json"] == {"lr": 1e-4}


def test_store_refuses_a_newer_schema(tmp_path: Path) -> None:
    db = tmp_path / "garden.db"
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 5}")
    with pytest.raises(RuntimeError, match="newer than this Model Garden"):
        Store(db)


def test_store_is_safe_from_several_threads(tmp_path: Path) -> None:
    store = Store(tmp_path / "garden.db")
    store.insert(
        "jobs",
        {"id": "job-t", "name": "t", "status": "running", "spec_json": {}, "created_at": 0.0},
    )
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            for step in range(50):
                store.insert(
                    "job_metrics", {"job_id": "job-t", "ts": 0.0, "step": step, "loss": worker}
                )
                store.update("jobs", "job-t", {"progress_json": {"step": step}})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert store.query("SELECT COUNT(*) AS n FROM job_metrics")[0]["n"] == 200


def test_new_ids_are_unique() -> None:
    assert len({new_id("job") for _ in range(1000)}) == 1000


def _old_database(db: Path, version: int) -> sqlite3.Connection:
    """A database as Model Garden left it at schema ``version``."""
    conn = sqlite3.connect(db)
    for migration in MIGRATIONS[:version]:
        for statement in migration.split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute(f"PRAGMA user_version={version}")
    return conn


def test_version_2_database_moves_the_job_plan_out_of_progress(tmp_path: Path) -> None:
    db = tmp_path / "garden.db"
    plan = {
        "model_id": "SmolLM2-135M-Instruct",
        "model_path": "/models/base/SmolLM2-135M-Instruct",
        "train_path": "/datasets/facts/train.jsonl",
        "eval_path": None,
        "dataset_id": "ds-1",
        "dataset_name": "facts",
        "data_format": "openai",
    }
    live = {"step": 4, "total_steps": 9, "loss": 1.5, "energy_kwh": 0.002}
    with _old_database(db, 2) as conn:
        conn.execute(
            "INSERT INTO jobs (id, name, status, spec_json, progress_json, checkpoint_dir, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                "job-old",
                "old-run",
                "stopped",
                json.dumps({"dataset": "ds-1", "name": "old-run"}),
                json.dumps({**plan, **live, "resume_from": None}),
                str(tmp_path / "checkpoints" / "job-old"),
                1.0,
            ),
        )
        conn.execute(
            "INSERT INTO jobs (id, name, status, spec_json, created_at) VALUES (?, ?, ?, ?, ?)",
            ("job-bare", "bare", "queued", "{}", 2.0),
        )

    store = Store(db)
    assert store.schema_version() == SCHEMA_VERSION
    old = store.get("jobs", "job-old")
    assert old is not None
    assert old["plan_json"] == plan
    assert old["progress_json"] == live
    bare = store.get("jobs", "job-bare")
    assert bare is not None and bare["plan_json"] is None and bare["progress_json"] is None

    from garden.engine.training.queries import get_job

    job = get_job(store, "job-old")
    assert job.plan is not None and job.plan.dataset_name == "facts"
    assert job.plan.model_path == plan["model_path"] and job.plan.eval_path is None
    assert (job.progress.step, job.progress.total_steps, job.progress.loss) == (4, 9, 1.5)
    assert job.spec is not None and job.spec.dataset == "ds-1"


def test_version_3_database_gets_unique_names_without_losing_rows(tmp_path: Path) -> None:
    db = tmp_path / "garden.db"
    with _old_database(db, 3) as conn:
        for ds_id in ("ds-1", "ds-2"):
            conn.execute(
                "INSERT INTO datasets (id, name, source, format, path, created_at)"
                " VALUES (?, 'facts', 'f.jsonl', 'openai', '/d', 1.0)",
                (ds_id,),
            )
        for job_id, status in (("job-1", "running"), ("job-2", "queued"), ("job-3", "failed")):
            conn.execute(
                "INSERT INTO jobs (id, name, status, spec_json, created_at)"
                " VALUES (?, 'run', ?, '{}', 1.0)",
                (job_id, status),
            )

    store = Store(db)
    assert store.schema_version() == SCHEMA_VERSION
    names = {row["id"]: row["name"] for row in store.query("SELECT id, name FROM datasets")}
    assert names == {"ds-1": "facts", "ds-2": "facts-ds-2"}
    jobs = {row["id"]: row["name"] for row in store.query("SELECT id, name FROM jobs")}
    assert jobs == {"job-1": "run", "job-2": "run-job-2", "job-3": "run"}
    row = {"id": "ds-3", "name": "facts", "source": "s", "format": "text", "path": "/p"}
    with pytest.raises(sqlite3.IntegrityError):
        store.insert("datasets", {**row, "created_at": 2.0})
    with pytest.raises(sqlite3.IntegrityError):
        store.insert(
            "jobs",
            {"id": "job-4", "name": "run", "status": "queued", "spec_json": {}, "created_at": 2.0},
        )
    store.insert(
        "jobs",
        {"id": "job-5", "name": "run", "status": "failed", "spec_json": {}, "created_at": 2.0},
    )
