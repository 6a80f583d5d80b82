"""SQLite persistence (stdlib sqlite3, WAL) with a versioned schema.

One connection per thread; every write runs in its own transaction. Columns whose name
ends in ``_json`` are encoded on write and decoded on read. New columns and tables are added
by appending to ``MIGRATIONS``: an existing database is upgraded in place, never recreated.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TABLES = (
    "datasets",
    "models",
    "jobs",
    "job_metrics",
    "job_logs",
    "emissions",
    "emission_readings",
    "evaluations",
    "visitor_items",
)

MIGRATIONS: list[str] = [
    # 1: the initial schema
    """
    CREATE TABLE datasets (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        source TEXT NOT NULL,
        format TEXT NOT NULL,
        mapping_json TEXT,
        rows INTEGER NOT NULL DEFAULT 0,
        train_rows INTEGER NOT NULL DEFAULT 0,
        eval_rows INTEGER NOT NULL DEFAULT 0,
        eval_fraction REAL NOT NULL DEFAULT 0,
        seed INTEGER NOT NULL DEFAULT 0,
        token_stats_json TEXT,
        warnings_json TEXT,
        path TEXT NOT NULL,
        raw_path TEXT,
        created_at REAL NOT NULL
    );
    CREATE TABLE models (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,            -- default | base | finetuned | hub
        path TEXT,
        base_model TEXT,
        adapter_path TEXT,
        job_id TEXT,
        meta_json TEXT,
        created_at REAL NOT NULL
    );
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL DEFAULT 'train',
        status TEXT NOT NULL,          -- queued | running | stopping | completed | stopped | failed | cancelled | interrupted
        spec_json TEXT NOT NULL,
        backend TEXT,
        backend_reason TEXT,
        device TEXT,
        pid INTEGER,
        progress_json TEXT,
        result_json TEXT,
        error TEXT,
        error_kind TEXT,
        output_dir TEXT,
        checkpoint_dir TEXT,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL
    );
    CREATE INDEX jobs_status ON jobs(status);
    CREATE TABLE job_metrics (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        ts REAL NOT NULL,
        step INTEGER NOT NULL,
        epoch REAL,
        loss REAL,
        eval_loss REAL,
        learning_rate REAL,
        grad_norm REAL,
        tokens_per_second REAL,
        energy_kwh REAL,
        emissions_kg REAL,
        data_json TEXT
    );
    CREATE INDEX job_metrics_job ON job_metrics(job_id, step);
    CREATE TABLE job_logs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        ts REAL NOT NULL,
        level TEXT NOT NULL DEFAULT 'INFO',
        message TEXT NOT NULL
    );
    CREATE INDEX job_logs_job ON job_logs(job_id, id);
    CREATE TABLE emissions (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,            -- training | chat | other
        ref_id TEXT,                   -- job id or chat session id
        label TEXT,
        started_at REAL NOT NULL,
        ended_at REAL,
        duration_s REAL,
        energy_kwh REAL,
        cpu_energy_kwh REAL,
        gpu_energy_kwh REAL,
        ram_energy_kwh REAL,
        emissions_kg REAL,
        emissions_rate_kg_s REAL,
        cpu_power_w REAL,
        gpu_power_w REAL,
        ram_power_w REAL,
        country_iso_code TEXT,
        region TEXT,
        pue REAL,
        tracking_mode TEXT,
        power_source TEXT,             -- how power was obtained (measured or estimated)
        status TEXT NOT NULL DEFAULT 'running',   -- running | final | unavailable
        unavailable_reason TEXT,
        data_json TEXT
    );
    CREATE INDEX emissions_ref ON emissions(kind, ref_id);
    CREATE TABLE emission_readings (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        emission_id TEXT NOT NULL REFERENCES emissions(id) ON DELETE CASCADE,
        ts REAL NOT NULL,
        energy_kwh REAL,
        emissions_kg REAL,
        cpu_power_w REAL,
        gpu_power_w REAL,
        ram_power_w REAL
    );
    CREATE INDEX emission_readings_emission ON emission_readings(emission_id, ts);
    """,
    # 2: the process that owns a queued/running job (so a restart can tell orphans apart)
    "ALTER TABLE jobs ADD COLUMN owner_pid INTEGER",
    # 3: a job's plan (model and dataset files) gets its own column, out of its live progress
    """
    ALTER TABLE jobs ADD COLUMN plan_json TEXT;
    UPDATE jobs SET
        plan_json = json_object(
            'model_id', json_extract(progress_json, '$.model_id'),
            'model_path', json_extract(progress_json, '$.model_path'),
            'train_path', json_extract(progress_json, '$.train_path'),
            'eval_path', json_extract(progress_json, '$.eval_path'),
            'dataset_id', json_extract(progress_json, '$.dataset_id'),
            'dataset_name', json_extract(progress_json, '$.dataset_name'),
            'data_format', json_extract(progress_json, '$.data_format')
        ),
        progress_json = json_remove(
            progress_json,
            '$.model_id', '$.model_path', '$.train_path', '$.eval_path',
            '$.dataset_id', '$.dataset_name', '$.data_format', '$.resume_from'
        )
    WHERE json_valid(progress_json) AND json_type(progress_json, '$.model_path') IS NOT NULL
    """,
    # 4: process identity (pid + start time), and names made unique by the database. Older
    # duplicates get the row id appended first, so an existing database still opens.
    """
    ALTER TABLE jobs ADD COLUMN pid_started REAL;
    ALTER TABLE jobs ADD COLUMN owner_started REAL;
    UPDATE datasets SET name = name || '-' || id
    WHERE rowid NOT IN (SELECT min(rowid) FROM datasets GROUP BY name);
    CREATE UNIQUE INDEX datasets_name ON datasets(name);
    UPDATE jobs SET name = name || '-' || id
    WHERE status IN ('queued', 'running', 'stopping')
      AND rowid NOT IN (
        SELECT min(rowid) FROM jobs WHERE status IN ('queued', 'running', 'stopping')
        GROUP BY name
      );
    CREATE UNIQUE INDEX jobs_active_name ON jobs(name)
    WHERE status IN ('queued', 'running', 'stopping')
    """,
    # 5: evaluations of a job's fine-tuned model (the newest one is shown with the run)
    """
    CREATE TABLE evaluations (
        id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        dataset_id TEXT,
        status TEXT NOT NULL,          -- completed | failed
        eval_loss REAL,
        perplexity REAL,
        rouge_l REAL,
        exact_match REAL,
        judge_win_rate REAL,
        n INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        result_json TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX evaluations_job ON evaluations(job_id, created_at)
    """,
    # 6: what each visitor of a public demo made (only its maker may delete or stop it)
    """
    CREATE TABLE visitor_items (
        kind TEXT NOT NULL,            -- dataset | job
        item_id TEXT NOT NULL,
        visitor TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (kind, item_id)
    );
    CREATE INDEX visitor_items_visitor ON visitor_items(visitor, kind)
    """,
    # 7: a GRPO run's newest sampled completions with their rewards (a short list)
    "ALTER TABLE jobs ADD COLUMN samples_json TEXT",
    # 8: a dataset synthesised from documents: its teacher and the generation's energy and CO2
    """
    ALTER TABLE datasets ADD COLUMN teacher TEXT;
    ALTER TABLE datasets ADD COLUMN synthesis_emission_id TEXT;
    ALTER TABLE datasets ADD COLUMN synthesis_energy_kwh REAL;
    ALTER TABLE datasets ADD COLUMN synthesis_emissions_kg REAL
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def new_id(prefix: str) -> str:
    """A short unique id such as ``job-1a2b3c4d5e``."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _encode(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: (json.dumps(value) if key.endswith("_json") and value is not None else value)
        for key, value in row.items()
    }


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in row.keys():  # noqa: SIM118 - sqlite3.Row is not a mapping
        value = row[key]
        out[key] = json.loads(value) if key.endswith("_json") and value is not None else value
    return out


def _check_name(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"invalid SQL identifier {name!r}")
    return name


class Store:
    """Thread-safe access to ``garden.db``."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self.migrate()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def schema_version(self) -> int:
        return int(self._connection().execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> int:
        """Bring the schema up to ``SCHEMA_VERSION``; returns the number of migrations applied."""
        applied = 0
        with self.transaction() as conn:
            current = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} has schema version {current}, newer than this Model Garden "
                    f"({SCHEMA_VERSION}): upgrade Model Garden or point STORAGE_ROOT elsewhere"
                )
            for version in range(current, SCHEMA_VERSION):
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={version + 1}")
                applied += 1
        return applied

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # generic row access -------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return [_decode(row) for row in self._connection().execute(sql, params).fetchall()]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write statement; returns the number of rows changed."""
        with self.transaction() as conn:
            return conn.execute(sql, params).rowcount

    def insert(self, table: str, row: Mapping[str, Any]) -> int:
        """Insert a row; returns its rowid."""
        table = _check_name(table)
        data = _encode(row)
        columns = ", ".join(_check_name(key) for key in data)
        marks = ", ".join("?" for _ in data)
        with self.transaction() as conn:
            cursor = conn.execute(
                f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(data.values())
            )
            return int(cursor.lastrowid or 0)

    def insert_many(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        table = _check_name(table)
        encoded = [_encode(row) for row in rows]
        columns = list(encoded[0])
        sql = (
            f"INSERT INTO {table} ({', '.join(_check_name(c) for c in columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})"
        )
        with self.transaction() as conn:
            conn.executemany(sql, [[row.get(c) for c in columns] for row in encoded])

    def update(self, table: str, row_id: str, fields: Mapping[str, Any]) -> bool:
        if not fields:
            return False
        table = _check_name(table)
        data = _encode(fields)
        assignments = ", ".join(f"{_check_name(key)} = ?" for key in data)
        with self.transaction() as conn:
            cursor = conn.execute(
                f"UPDATE {table} SET {assignments} WHERE id = ?", [*data.values(), row_id]
            )
            return cursor.rowcount > 0

    def get(self, table: str, row_id: str) -> dict[str, Any] | None:
        rows = self.query(f"SELECT * FROM {_check_name(table)} WHERE id = ?", (row_id,))
        return rows[0] if rows else None

    def delete(self, table: str, row_id: str) -> bool:
        return self.execute(f"DELETE FROM {_check_name(table)} WHERE id = ?", (row_id,)) > 0

    def list(
        self,
        table: str,
        where: Mapping[str, Any] | None = None,
        order_by: str = "rowid DESC",
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        sql = f"SELECT * FROM {_check_name(table)}"
        params: list[Any] = []
        if where:
            sql += " WHERE " + " AND ".join(f"{_check_name(key)} = ?" for key in where)
            params.extend(where.values())
        column, _, direction = order_by.partition(" ")
        if direction.upper() not in ("", "ASC", "DESC"):
            raise ValueError(f"invalid order {order_by!r}")
        sql += f" ORDER BY {_check_name(column)} {direction}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return self.query(sql, params)


_stores: dict[Path, Store] = {}
_stores_lock = threading.Lock()


def get_store(path: Path | None = None) -> Store:
    """The shared store for ``path`` (default: the configured ``garden.db``)."""
    if path is None:
        from garden.config import get_settings

        path = get_settings().db_path
    key = Path(path).resolve()
    with _stores_lock:
        if key not in _stores:
            _stores[key] = Store(key)
        return _stores[key]


def now() -> float:
    return time.time()
