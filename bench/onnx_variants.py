"""Which ONNX copy of the default model answers one chat stream fastest on this CPU?

Builds several copies of the default model with onnxruntime-genai's model builder (in a
subprocess, as ``garden/engine/serving/onnx_build.py`` does), loads them all, and measures them
interleaved (A, B, C, A, B, C …) so that a shared, loaded machine slows every variant alike:
TTFT and decode tok/s of one greedy stream of 128 new tokens (EOS ignored) for "Write a short
story about a garden." through the chat template, with the copy's own ``og.Tokenizer`` and
``og.Generator`` and ``intra_op_num_threads`` = 2, as ``onnx_backend.py`` runs them. Each copy's
greedy answer to "What is the capital of France?" is checked for "Paris" and for stopping.
Session-option variants (spinning off, a lower graph optimization level) ride on today's copy.

    HF_HUB_OFFLINE=1 uv run python bench/onnx_variants.py [--rounds 4] [--keep DIR]

``--keep DIR`` builds into DIR and reuses copies already there (else a temp dir, removed at the
end). The last line is one JSON object with the figures, the load before/after and the CPU flags.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchenv import conditions, load_now

THREADS = 2
NEW_TOKENS = 128
STORY = "Write a short story about a garden."
QUESTION = "What is the capital of France?"

_INT4 = ("-p", "int4", "-e", "cpu", "--extra_options")
_INT8 = ("-p", "int8", "-e", "cpu", "--extra_options")
_MIXED = "last_matmul:int8,mixed_layers:int8"
# name -> builder options after -i/-o/-c; "today" is onnx_build.BUILDER_OPTIONS as of issue 19.
BUILDS: dict[str, tuple[str, ...]] = {
    "today": (*_INT4, "accuracy_level=4", "algo_config=k_quant_mixed"),
    "kqm-acc1": (*_INT4, "accuracy_level=1", "algo_config=k_quant_mixed"),
    "rtn-acc4": (*_INT4, "accuracy_level=4", "algo_config=rtn"),
    "rtn-acc1": (*_INT4, "accuracy_level=1", "algo_config=rtn"),
    "int8-acc4": (*_INT8, "accuracy_level=4"),
    "int8-acc1": (*_INT8, "accuracy_level=1"),
    # k_quant fails at block sizes 64 and 128 here (576 columns: an odd count of blocks), so the
    # larger blocks use the default quantizer with k_quant_mixed's int8 layers.
    "mixed-bs64": (*_INT4, "accuracy_level=4", f"matmul_mixed_precision={_MIXED}", "block_size=64"),
    "mixed-bs128": (
        *_INT4,
        "accuracy_level=4",
        f"matmul_mixed_precision={_MIXED}",
        "block_size=128",
    ),
}
# name -> (copy, extra decoder session options)
SESSIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "today+nospin": ("today", {"session.intra_op.allow_spinning": "0"}),
    "today+1thread": ("today", {"intra_op_num_threads": 1}),
    "today+extended": ("today", {"graph_optimization_level": "ORT_ENABLE_EXTENDED"}),
    "rtn-acc4+nospin": ("rtn-acc4", {"session.intra_op.allow_spinning": "0"}),
}


def build(name: str, base: Path, root: Path) -> tuple[Path, float]:
    """The copy ``name`` under ``root`` (built unless already there) and its build seconds."""
    from garden.engine.export.gguf import byte_level_tokenizer

    target = root / name
    if (target / "genai_config.json").is_file():
        return target, 0.0
    shutil.rmtree(target, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "onnxruntime_genai.models.builder",
        "-i",
        str(base),
        "-o",
        str(target),
        "-c",
        str(target / "cache"),
        *BUILDS[name],
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    seconds = time.perf_counter() - start
    if done.returncode != 0 or not (target / "genai_config.json").is_file():
        raise RuntimeError(f"{name}: builder failed: {done.stderr[-1500:]}")
    shutil.rmtree(target / "cache", ignore_errors=True)
    byte_level_tokenizer(target)  # as onnx_build does, else "Ġ" for every space
    return target, seconds


class Copy:
    """One loaded copy (and session options) of the default model."""

    def __init__(self, folder: Path, session: dict[str, Any]) -> None:
        import onnxruntime_genai as og

        config = og.Config(str(folder))
        options = {"intra_op_num_threads": THREADS, **session}
        config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
        self.model = og.Model(config)
        self.tokenizer = og.Tokenizer(self.model)
        genai = json.loads((folder / "genai_config.json").read_text(encoding="utf-8"))["model"]
        eos = genai.get("eos_token_id")
        self.eos = set(eos if isinstance(eos, list) else [eos])
        self.size_mb = sum(f.stat().st_size for f in folder.glob("*.onnx*")) / 1e6
        self.story = self.prompt(STORY)
        self.question = self.prompt(QUESTION)
        self.run(self.prompt("Hi"), 4, ignore_eos=True)  # first-call set-up, as the backend does

    def prompt(self, text: str) -> list[int]:
        messages = json.dumps([{"role": "user", "content": text}])
        rendered = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        return [int(t) for t in self.tokenizer.encode(rendered)]

    def run(self, ids: list[int], new: int, ignore_eos: bool) -> tuple[list[int], float, float]:
        """Greedy tokens (EOS excluded), seconds to the first token, seconds of the rest."""
        import onnxruntime_genai as og

        total = len(ids) + new
        options: dict[str, Any] = {"max_length": total, "do_sample": False}
        if ignore_eos:
            options["min_length"] = total
        start = time.perf_counter()
        params = og.GeneratorParams(self.model)
        params.set_search_options(**options)
        generator = og.Generator(self.model, params)
        generator.append_tokens(ids)
        tokens: list[int] = []
        first = 0.0
        while not generator.is_done():
            generator.generate_next_token()
            token = int(generator.get_next_tokens()[0])
            if not tokens:
                first = time.perf_counter()
            if token in self.eos and not ignore_eos:
                break
            tokens.append(token)
        end = time.perf_counter()
        return tokens, first - start, end - first

    def paris(self) -> tuple[str, bool, bool]:
        tokens, _, _ = self.run(self.question, 64, ignore_eos=False)
        text = self.tokenizer.decode(tokens)
        return text, "Paris" in text, len(tokens) < 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--keep", type=Path, help="build into (and reuse copies in) this folder")
    parser.add_argument("--only", nargs="+", help="variants to measure (default: all)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    before = load_now()
    print(f"load at start: {before}", flush=True)

    from garden.models import prepare_default_model

    base = Path(prepare_default_model()).resolve()
    root = args.keep or Path(tempfile.mkdtemp(prefix="onnx-variants-"))
    root.mkdir(parents=True, exist_ok=True)
    names = args.only or [*BUILDS, *SESSIONS]
    copies_needed = {SESSIONS[n][0] if n in SESSIONS else n for n in names}
    folders: dict[str, Path] = {}
    build_s: dict[str, float] = {}
    failed: dict[str, str] = {}
    for name in BUILDS:
        if name in copies_needed:
            try:
                folders[name], build_s[name] = build(name, base, root)
            except RuntimeError as exc:
                failed[name] = str(exc).strip().splitlines()[-1][:200]
                print(f"skipped {name}: {failed[name]}", flush=True)
                continue
            print(f"built {name} in {build_s[name]:.0f} s (0 = reused)", flush=True)
    names = [n for n in names if (SESSIONS[n][0] if n in SESSIONS else n) in folders]

    loaded: dict[str, Copy] = {}
    for name in names:
        copy, session = SESSIONS.get(name, (name, {}))
        try:
            loaded[name] = Copy(folders[copy], session)
        except RuntimeError as exc:  # a graph the builder wrote but onnxruntime refuses
            failed[name] = str(exc).strip().splitlines()[-1][:200]
            print(f"skipped {name}: {failed[name]}", flush=True)
    names = [n for n in names if n in loaded]

    answers: dict[str, tuple[str, bool, bool]] = {}
    for name, copy_ in loaded.items():
        start = time.perf_counter()
        answers[name] = copy_.paris()
        print(
            f"{name}: {answers[name][0][:50]!r} ({time.perf_counter() - start:.1f} s)", flush=True
        )
    ttft: dict[str, list[float]] = {name: [] for name in names}
    tok_s: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(args.rounds):
        order = names if round_ % 2 == 0 else names[::-1]  # no variant always runs first
        for name in order:
            tokens, first, rest = loaded[name].run(loaded[name].story, NEW_TOKENS, True)
            ttft[name].append(first)
            tok_s[name].append((len(tokens) - 1) / rest)
        print(f"round {round_ + 1}/{args.rounds} done, load {load_now()}", flush=True)

    reference = statistics.median(tok_s["today"]) if "today" in tok_s else None
    rows = []
    header = f"{'variant':<16} {'MB':>5} {'TTFT s':>7} {'tok/s':>7} {'range':>13} {'×today':>6}"
    print(f"\n{header}  Paris/stops  answer")
    for name in names:
        speed = statistics.median(tok_s[name])
        first = statistics.median(ttft[name])
        text, has_paris, stops = answers[name]
        ratio = speed / reference if reference else None
        rows.append(
            {
                "variant": name,
                "size_mb": round(loaded[name].size_mb, 1),
                "ttft_s": round(first, 3),
                "tok_s": round(speed, 1),
                "tok_s_all": [round(v, 1) for v in tok_s[name]],
                "ttft_all": [round(v, 3) for v in ttft[name]],
                "vs_today": round(ratio, 3) if ratio else None,
                "paris": has_paris,
                "stops": stops,
                "answer": text[:120],
                "build_s": round(build_s.get(SESSIONS.get(name, (name,))[0], 0.0), 1),
            }
        )
        spread = f"{min(tok_s[name]):.0f}-{max(tok_s[name]):.0f}"
        print(
            f"{name:<16} {loaded[name].size_mb:5.0f} {first:7.3f} {speed:7.1f} {spread:>13} "
            f"{ratio or 0:6.2f}  {has_paris!s:>5}/{stops!s:<5}  {text[:60]!r}"
        )
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    result = {
        "bench": "onnx_variants",
        "onnx_threads": THREADS,
        "new_tokens": NEW_TOKENS,
        "rounds": args.rounds,
        "variants": rows,
        "build_failed": failed,
        **conditions(before),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
