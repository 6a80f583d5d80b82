"""Dataset ingest benchmark: inspect and import speed, and proof that import streams.

Generates alpaca-style JSONL files of 10k and 100k rows, then in a fresh process per run
inspects and imports each one (real tokenizer, real store) and records peak RSS. Side by side,
a naive loader that reads every row into a list shows what growing with the file looks like.

    uv run python bench/data_ingest.py [--rows 100000]

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import benchenv

WORDS = [
    "garden",
    "moon",
    "well",
    "seed",
    "root",
    "leaf",
    "water",
    "light",
    "soil",
    "bloom",
    "petal",
    "night",
    "stone",
    "path",
    "rain",
    "cat",
    "pond",
    "lantern",
    "gardener",
    "festival",
    "acre",
    "motto",
    "island",
    "harbour",
    "lily",
    "compost",
    "bee",
]


def generate(path: Path, rows: int) -> None:
    rng = random.Random(rows)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(rows):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30)))
            answer = " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 60)))
            row = {"instruction": f"Question {i}: {words}?", "input": "", "output": answer}
            handle.write(json.dumps(row) + "\n")


class RssSampler:
    """Samples this process's current RSS every few ms; ``peak_mb`` is the highest seen.

    (``ru_maxrss`` would hide the work under the spike of importing torch/transformers.)
    """

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self.start_mb = self._now()
        self.peak_mb = self.start_mb
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _now(self) -> float:
        return self._process.memory_info().rss / 1024 / 1024

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak_mb = max(self.peak_mb, self._now())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._now())


def child_import(path: Path) -> dict[str, float]:
    from garden.config import get_settings
    from garden.data import get_dataset, import_dataset, inspect_source
    from garden.data.tokens import get_tokenizer

    settings = get_settings()
    get_tokenizer(None, settings)
    sampler = RssSampler()
    start = time.perf_counter()
    report = inspect_source(path, settings=settings)
    inspect_s = time.perf_counter() - start
    start = time.perf_counter()
    record = import_dataset(path, f"bench-{path.stem}", eval_fraction=0.1, settings=settings)
    import_s = time.perf_counter() - start
    sampler.stop()
    assert get_dataset(record.id, settings).rows == report.valid_rows
    return {
        "rows": report.rows,
        "inspect_s": inspect_s,
        "import_s": import_s,
        "baseline_rss_mb": sampler.start_mb,
        "peak_rss_mb": sampler.peak_mb,
    }


def child_naive(path: Path) -> dict[str, float]:
    from garden.config import get_settings
    from garden.data.tokens import get_tokenizer

    get_tokenizer(None, get_settings())  # same start as the streaming child, for a fair baseline
    sampler = RssSampler()
    start = time.perf_counter()
    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    load_s = time.perf_counter() - start
    sampler.stop()
    return {
        "rows": len(rows),
        "load_s": load_s,
        "baseline_rss_mb": sampler.start_mb,
        "peak_rss_mb": sampler.peak_mb,
    }


def run_child(mode: str, path: Path, storage: Path, models_dir: Path) -> dict[str, float]:
    env = dict(
        os.environ,
        STORAGE_ROOT=str(storage),
        MODELS_DIR=str(models_dir),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(path)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        sys.exit(f"child {mode} {path.name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"))
    args = parser.parse_args()
    if args.child:
        mode, path = args.child
        result = child_import(Path(path)) if mode == "import" else child_naive(Path(path))
        print(json.dumps(result))
        return
    load_before = benchenv.load_now()

    from garden.models import prepare_default_model

    models_dir = prepare_default_model().parent.parent
    small_rows = max(1, args.rows // 10)
    with tempfile.TemporaryDirectory(prefix="garden-bench-") as tmp:
        root = Path(tmp)
        files = {}
        for rows in (small_rows, args.rows):
            files[rows] = root / f"rows{rows}.jsonl"
            generate(files[rows], rows)
        results = {}
        for rows, path in files.items():
            results[rows] = {
                "stream": run_child("import", path, root / f"storage{rows}", models_dir),
                "naive": run_child("naive", path, root / f"naive{rows}", models_dir),
            }

    small, big = results[small_rows], results[args.rows]
    print(f"{'':28}{small_rows:>12,} rows{args.rows:>12,} rows     ratio")
    lines = [
        ("inspect rows/s", lambda r: r["stream"]["rows"] / r["stream"]["inspect_s"]),
        ("import rows/s", lambda r: r["stream"]["rows"] / r["stream"]["import_s"]),
        ("stream: peak RSS MB", lambda r: r["stream"]["peak_rss_mb"]),
        (
            "stream: growth over base MB",
            lambda r: r["stream"]["peak_rss_mb"] - r["stream"]["baseline_rss_mb"],
        ),
        ("naive list: peak RSS MB", lambda r: r["naive"]["peak_rss_mb"]),
        (
            "naive: growth over base MB",
            lambda r: r["naive"]["peak_rss_mb"] - r["naive"]["baseline_rss_mb"],
        ),
    ]
    for label, fn in lines:
        a, b = fn(small), fn(big)
        ratio = b / a if a else float("nan")
        print(f"{label:28}{a:>17,.1f}{b:>17,.1f}{ratio:>9.2f}x")
    stream_growth = big["stream"]["peak_rss_mb"] - big["stream"]["baseline_rss_mb"]
    naive_growth = big["naive"]["peak_rss_mb"] - big["naive"]["baseline_rss_mb"]
    print(
        f"At {args.rows:,} rows the naive loader grows {naive_growth / max(stream_growth, 1):.1f}x "
        "more than the streaming inspect+import (RSS sampled during the work, over its start)."
    )
    print(
        json.dumps(
            {
                "rows_per_s": round(big["stream"]["rows"] / big["stream"]["import_s"]),
                "inspect_rows_per_s": round(big["stream"]["rows"] / big["stream"]["inspect_s"]),
                "peak_rss_mb_10k": round(small["stream"]["peak_rss_mb"], 1),
                "peak_rss_mb_100k": round(big["stream"]["peak_rss_mb"], 1),
                "rss_ratio_100k_vs_10k": round(
                    big["stream"]["peak_rss_mb"] / small["stream"]["peak_rss_mb"], 3
                ),
                "naive_peak_rss_mb_100k": round(big["naive"]["peak_rss_mb"], 1),
                **benchenv.conditions(load_before),
            }
        )
    )


if __name__ == "__main__":
    main()
