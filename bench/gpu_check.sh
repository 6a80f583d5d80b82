#!/usr/bin/env bash
# The CUDA variant proven on a real NVIDIA GPU (issue 14), as one short script:
#   1. sync the CUDA variant (`uv sync --no-group cpu --extra gpu`);
#   2. the same short LoRA job of the embedded default model with the Unsloth backend and with
#      the TRL backend, each in a process of its own (tokens/s, peak GPU memory);
#   3. serve with CUDA vLLM (bench/serve_throughput.py: tokens/s, cold start, TTFT);
#   4. print ONE JSON line with every figure (a step that fails is named under "errors").
# No hub access needed: only the embedded default model is used (HF_HUB_OFFLINE=1).
#
#   bash bench/gpu_check.sh [--steps N] [--no-sync] [--dry-run]
#
# --no-sync  use the .venv as it is (already synced with the CUDA variant, e.g. no network)
# --dry-run  run nothing heavy: show the steps on stderr and print the JSON line, figures empty
set -euo pipefail
cd "$(dirname "$0")/.."

steps=30
sync=1
dry_run=0
while [ $# -gt 0 ]; do
    case "$1" in
        --steps)
            steps="${2:?--steps needs a number}"
            shift 2
            ;;
        --no-sync) sync=0; shift ;;
        --dry-run) dry_run=1; shift ;;
        -h | --help)
            sed -n '2,13p' "$0"
            exit 0
            ;;
        *)
            echo "error: unknown option '$1'; see: bash bench/gpu_check.sh --help" >&2
            exit 2
            ;;
    esac
done
case "$steps" in
    '' | *[!0-9]*)
        echo "error: --steps takes a whole number, got '$steps'" >&2
        exit 2
        ;;
esac

export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error PYTHONUNBUFFERED=1
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
results=$(mktemp -d "${TMPDIR:-/tmp}/garden-gpu-check.XXXXXX")
trap 'rm -rf "$results"' EXIT
run=(uv run --no-sync --no-group cpu --extra gpu)

# step NAME COMMAND...: runs it with its output in $results/NAME.txt; a failure is recorded
# there (the report names it) and the script goes on to the next step.
step() {
    local name=$1
    shift
    echo "== $name: $*" >&2
    if [ "$dry_run" = 1 ]; then
        return 0
    fi
    if ! "$@" >"$results/$name.txt" 2>"$results/$name.err"; then
        tail -n 1 "$results/$name.err" >>"$results/$name.txt"
    fi
}

if [ "$dry_run" = 1 ]; then
    echo "not run (--dry-run)" >"$results/sync.txt"
elif [ "$sync" = 1 ]; then
    echo "uv sync --no-group cpu --extra gpu" >"$results/sync.txt"
    if ! uv sync --no-group cpu --extra gpu >&2; then
        echo "failed: uv sync --no-group cpu --extra gpu (see above)" >"$results/sync.txt"
    fi
else
    echo "skipped (--no-sync)" >"$results/sync.txt"
fi
for backend in trl_peft unsloth; do
    step "train_$backend" "${run[@]}" python bench/gpu_bench.py train --backend "$backend" \
        --steps "$steps"
done
step serve "${run[@]}" python bench/serve_throughput.py --skip-direct --hf-prompts 8

report=(bench/gpu_bench.py report "$results" --load-before "$load_before")
if [ "$dry_run" = 1 ]; then
    python3 "${report[@]}" --dry-run
else
    "${run[@]}" python "${report[@]}"
fi
