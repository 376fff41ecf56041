#!/usr/bin/env bash
# One prepared GPU session for the GPU checks of issues 7, 8 and 9, in a fixed wall-clock budget.
#
#   bash benchmarks/gpu_session.sh OUT_DIR [BUDGET_SECONDS]      # on a machine with CUDA
#   DRY=1 bash benchmarks/gpu_session.sh /tmp/dry 400             # every step, tiny, on a CPU
#   STEPS="1 3" bash benchmarks/gpu_session.sh OUT_DIR              # only some steps
#   DRY_RUN=1 STEPS=4 bash benchmarks/gpu_session.sh /tmp/dry 300  # (DRY_RUN = DRY)
#
# Steps (each one guarded by `timeout`; a failed step is logged and the next one runs):
#   0. import check (fails fast, before any GPU time is spent on a broken environment);
#   1. benchmarks/gpu_stage1.py on the reproduction's cohort (9 standard 0.7 mm phantoms,
#      generated and prepared in parallel): bare network rate, training rate with the real
#      data pipeline, peak memory, stage-1 inference on 320x512x512;
#   2. benchmarks/bench_two_stage.py: two-stage inference on a 512x512x320 phantom, share of
#      each step;
#   3. `deeptree reproduce --profile gpu` on that cohort, with training lengths sized from the
#      rate measured in step 1 and the time left (the lengths are in results.json and the
#      session log);
#   4. (issue 21; runs before step 3, which takes the time left) DDP overhead: the same
#      `deeptree train --profile gpu` as a plain process and as a one-process `torchrun`,
#      benchmarks/bench_ddp.py -> ddp_overhead.json (target <= 5%).
# OUT_DIR receives: session.log, gpu_stage1.json, two_stage.json, nvidia-smi.txt and
# reproduce.tar.gz (tables, figures, results.json, training logs; no checkpoints).
# Wheels of packages missing on the machine (monai, nibabel) are installed from .whl/ if
# present (see benchmarks/RESULTS.md, "GPU session").
set -u
OUT_DIR=${1:-${OUT:-runs/gpu_session}}
BUDGET=${2:-580}
DRY=${DRY:-${DRY_RUN:-0}}
STEPS=${STEPS:-1 2 3 4}
want() { case " $STEPS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
START=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - START))); }
mkdir -p "$OUT_DIR"
exec > >(tee -a "$OUT_DIR/session.log") 2>&1
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if [ -d .whl ] && ! $PY -c "import monai, nibabel" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
WORK=${WORK:-/tmp/deeptree_gpu}
REPRO=$WORK/reproduce
mkdir -p "$WORK"

echo "== 0. environment ($(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo ?))"
nvidia-smi >"$OUT_DIR/nvidia-smi.txt" 2>&1 || echo "no nvidia-smi"
$PY - <<'EOF' || { echo "import check failed: stopping before any GPU work"; exit 3; }
import monai, nibabel, numpy, scipy, skimage, torch
import deeptree.cli, deeptree.pipeline, deeptree.evaluation.reproduce, deeptree.stage2.task  # noqa: F401
print("python", __import__("sys").version.split()[0], "torch", torch.__version__,
      "cuda", torch.cuda.is_available(), "monai", monai.__version__, "numpy", numpy.__version__,
      "cores", __import__("os").cpu_count())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0))
EOF

if [ "$DRY" = 1 ]; then
    S1_ARGS="--dry-run --phantom smoke --cases 3 --iterations 6 --workers 2 --budget 60"
    TWO_ARGS="--large-device cpu --large-shape 96 96 72 --large-spacing 3 3 3"
    REPRO_ARGS="--profile smoke --cases 3 --device cpu --workers 2"
    RATE_FLOOR=1
else
    S1_ARGS="--phantom gpu --cases 9 --iterations 300 --workers 12 --budget 200"
    TWO_ARGS=""
    REPRO_ARGS="--profile gpu --cases 9 --workers 12"
    RATE_FLOOR=2
fi

if want 1; then
    echo "== 1. stage-1 rate, memory, inference ($(left) s left)"
    # shellcheck disable=SC2086
    timeout 215 $PY benchmarks/gpu_stage1.py --out "$WORK/stage1" --data "$REPRO/cohort" \
        --cache "$REPRO/cache" $S1_ARGS || echo "step 1 failed or timed out (rc $?)"
    cp "$WORK/stage1/gpu_stage1.json" "$OUT_DIR/" 2>/dev/null
fi

if want 2; then
    echo "== 2. two-stage inference ($(left) s left)"
    # shellcheck disable=SC2086
    timeout 120 $PY benchmarks/bench_two_stage.py --skip-cpu $TWO_ARGS \
        --json "$OUT_DIR/two_stage.json" || echo "step 2 failed or timed out (rc $?)"
fi

# ---- issue 21: DDP overhead (one-GPU torchrun vs the plain loop) ---------------------------
if want 4; then
    echo "== 4. DDP overhead: plain loop vs torchrun --nproc_per_node 1 ($(left) s left)"
    if [ "$DRY" = 1 ]; then
        DDP_ARGS="--profile smoke --device cpu --iterations 20 --workers 0"
    else
        DDP_ARGS="--profile gpu --iterations 300 --workers 12"
    fi
    # the cohort of step 1 (a no-op when it is there)
    # shellcheck disable=SC2086
    $PY benchmarks/gpu_stage1.py --data-only --out "$WORK/data" --data "$REPRO/cohort" \
        --cache "$REPRO/cache" $S1_ARGS >/dev/null || echo "cohort preparation failed (rc $?)"
    # shellcheck disable=SC2086
    timeout 200 $PY benchmarks/bench_ddp.py --data "$REPRO/cohort" --cache "$REPRO/cache" \
        --out "$WORK/ddp" --json "$OUT_DIR/ddp_overhead.json" $DDP_ARGS \
        || echo "step 4 failed or timed out (rc $?)"
fi
# ---- end of issue 21 ------------------------------------------------------------------------

want 3 || { echo "== done in $(($(date +%s) - START)) s"; exit 0; }
echo "== 3. reproduction ($(left) s left)"
# the cohort in parallel (a no-op after step 1; `deeptree reproduce` would make it one by one)
# shellcheck disable=SC2086
$PY benchmarks/gpu_stage1.py --data-only --out "$WORK/data" --data "$REPRO/cohort" \
    --cache "$REPRO/cache" $S1_ARGS >/dev/null || echo "cohort preparation failed (rc $?)"
# Training lengths from the measured training rate: evaluation of 2 test cases, stage-2
# sources and loading take about 200 s (230 reserved); the rest trains 5 stage-1 models (80%)
# and stage 2 (20%; ~1 it/s on the H200 on 2026-11-26: its data side, a breakage simulation
# per batch, is the limit).
read -r S1 S2 < <($PY - "$OUT_DIR/gpu_stage1.json" "$(left)" "$RATE_FLOOR" "$DRY" <<'EOF'
import json, sys
path, left, floor, dry = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
try:
    rate = float(json.load(open(path))["train_it_per_s"])
except Exception:
    rate = floor
train = max(0.0, left - 230.0)
s1 = int(0.8 * train / 5 * rate * 0.85) // 10 * 10
s2 = int(0.2 * train * 1.0) // 10 * 10
print(2, 2) if dry else print(max(s1, 50), max(s2, 50))
EOF
)
echo "stage-1 iterations $S1, stage-2 iterations $S2"
# shellcheck disable=SC2086
timeout $(($(left) - 20)) $PY -m deeptree reproduce $REPRO_ARGS --stage1-iterations "$S1" \
    --stage2-iterations "$S2" --no-validation --out "$REPRO" \
    || echo "step 3 failed or timed out (rc $?)"
(cd "$WORK" && find . \( -name '*.json' -o -name '*.jsonl' -o -name '*.md' -o -name '*.csv' \
    -o -name '*.png' \) -not -path '*/cache/*' -not -path '*/cohort/*' -print0 \
    | tar czf "$OUT_DIR/reproduce.tar.gz" --null -T -)
echo "== done in $(($(date +%s) - START)) s"
