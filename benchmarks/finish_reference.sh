#!/usr/bin/env bash
# The reference run's last steps (issue 32), once every model of it is trained:
#
#   bash benchmarks/finish_reference.sh RUN DEST [STEP ...]
#
# RUN   the finished `deeptree reproduce` run folder (e.g. runs/20261207-cpu-reference)
# DEST  its results folder (e.g. results/20261207-cpu-reference)
# STEP  any of: check ship rescore precision notebooks section (default: all, in this order)
#
#   check      every model meets the flattening rule (benchmarks/convergence_check.py):
#              refuses to go on when one is unfinished or still rising
#   ship       its models into DEST/models, float16 (deeptree ship), after removing the
#              partial-run copy (DEST/partial-models); float32 into $SCRATCH/ship32
#   rescore    `deeptree reproduce --models DEST`, timed (the 10-minute bar), and the same
#              from the float32 copy
#   precision  float16 against float32, every per-case row and table cell
#              (benchmarks/shipped_precision.py)
#   notebooks  every notebook on the cpu profile (notebook 07 scores DEST/models), published
#              into DEST (python -m deeptree.book publish), then the README's box (make readme)
#   section    the RESULTS.md section of the finished run, written from the records above and
#              DEST's component effects (benchmarks/reference_section.py)
#
# Records go to $RECORDS (default benchmarks/records/reference_finish/); scratch runs to $SCRATCH
# (default /tmp/reference-finish). Run it on an idle machine: the rescoring is timed.
# NOT package code: a benchmark script.
set -euo pipefail

if [ $# -lt 2 ]; then
    sed -n '2,9p' "$0"
    exit 2
fi
RUN=$(realpath "$1")
DEST=$2
shift 2
STEPS=${*:-check ship rescore precision notebooks section}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
SCRATCH=${SCRATCH:-/tmp/reference-finish}
RECORDS=${RECORDS:-$ROOT/benchmarks/records/reference_finish}
mkdir -p "$RECORDS" "$SCRATCH"
cd "$ROOT"
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}

step_check() {
    "$PY" benchmarks/convergence_check.py "$RUN" --json "$RECORDS/convergence.json" \
        --figure "$RECORDS/convergence.png"
    "$PY" - "$RECORDS/convergence.json" <<'EOF'
import json, sys
rows = json.load(open(sys.argv[1]))["models"]
bad = [r["model"] for r in rows if r["flat"] is not True]
print(f"{len(rows)} models, {len(rows) - len(bad)} flat")
sys.exit(f"not flat or unfinished: {', '.join(bad)}" if bad or not rows else 0)
EOF
}

step_ship() {
    rm -rf "$DEST/partial-models" "$SCRATCH/ship32"
    "$PY" -m deeptree ship "$RUN" "$DEST"
    "$PY" -m deeptree ship "$RUN" "$SCRATCH/ship32" --float32
    du -sh "$DEST/models" | tee "$RECORDS/shipped_size.txt"
}

step_rescore() {
    rm -rf "$SCRATCH/rescore16" "$SCRATCH/rescore32"
    local start
    start=$(date +%s.%N)
    "$PY" -m deeptree reproduce --models "$DEST" --out "$SCRATCH/rescore16" --no-progress
    "$PY" -c "import sys, time; print(f'rescoring {float(sys.argv[1]) - float(sys.argv[2]):.1f} s')" \
        "$(date +%s.%N)" "$start" | tee "$RECORDS/rescore_time.txt"
    grep -m1 -i "model name" /proc/cpuinfo | tee -a "$RECORDS/rescore_time.txt"
    uptime | tee -a "$RECORDS/rescore_time.txt"
    "$PY" -m deeptree reproduce --models "$SCRATCH/ship32" --out "$SCRATCH/rescore32" --no-progress
}

step_precision() {
    "$PY" benchmarks/shipped_precision.py "$SCRATCH/rescore32" "$SCRATCH/rescore16" \
        --json "$RECORDS/shipped_precision.json"
}

step_notebooks() {
    local before after
    before=$(ls -d runs/*-cpu 2>/dev/null | sort | tail -1 || true)
    make reproduce PROFILE=cpu
    after=$(ls -d runs/*-cpu | sort | tail -1)
    if [ "$after" = "$before" ]; then
        echo "make reproduce left no new runs/*-cpu folder" >&2
        exit 1
    fi
    "$PY" -m deeptree.book publish "$after" "$DEST"
    make readme
}

step_section() {
    "$PY" benchmarks/reference_section.py "$DEST" --records "$RECORDS" --write benchmarks/RESULTS.md
}

for step in $STEPS; do
    echo "== $step"
    "step_$step"
done
