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
#   3. `deeptree reproduce --profile gpu` with the reproduction's design (training seeds,
#      test phantoms of their own seed, intervals), as many seeds, test phantoms and
#      iterations as fit the time left at the rate measured in step 1 (the delimited section
#      "issue 18" below; the design chosen is in the session log and results.json);
#   4. (issue 21; runs before step 3, which takes the time left) DDP overhead: the same
#      `deeptree train --profile gpu` as a plain process and as a one-process `torchrun`,
#      benchmarks/bench_ddp.py -> ddp_overhead.json (target <= 5%).
# OUT_DIR receives: session.log, gpu_stage1.json, two_stage.json, nvidia-smi.txt and
# reproduce.tar.gz (tables, figures, results.json, training logs; no checkpoints).
# Wheels of packages missing on the machine (monai, nibabel) are installed from .whl/ if
# present (see benchmarks/HISTORY.md, "GPU session").
set -u
OUT_DIR=${1:-${OUT:-runs/gpu_session}}
BUDGET=${2:-540}  # 9 minutes of H200 time
DRY=${DRY:-${DRY_RUN:-0}}
STEPS=${STEPS:-1 2 4 3}
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
# ==== issue 18: the reproduction design at the gpu profile (begin) =============================
# The design of `deeptree reproduce` (training seeds, test phantoms from their own seed, paired
# effects with 95% intervals), as large as fits the time left: deeptree.evaluation.budget.
# size_to_budget picks the first (training seeds, test cases) of (3, 10), (3, 5), (2, 5), (2, 3),
# (1, 3), (1, 2) that fits at 50 iterations, then the longest training that fits, from the
# per-step costs of GPU_STEP_SECONDS with the stage-1 rate measured in step 1. clDice and the
# stage-2 options train with the first seed only, no validation runs (no time for it). When
# even the smallest design does not fit, it runs anyway under `timeout`; the log says so.
echo "== 3. reproduction design ($(left) s left)"
if [ "$DRY" = 1 ]; then
    DESIGN_PROFILE=smoke; DESIGN_CASES=2; DESIGN_DEVICE="--device cpu --workers 2"
else
    DESIGN_PROFILE=gpu; DESIGN_CASES=7; DESIGN_DEVICE="--workers 12"
fi
# the training + validation phantoms in parallel (a no-op after step 1 made them)
# shellcheck disable=SC2086
$PY benchmarks/gpu_stage1.py --data-only --out "$WORK/data" --data "$REPRO/cohort" \
    --cache "$REPRO/cache" $S1_ARGS --cases "$DESIGN_CASES" >/dev/null || echo "cohort preparation failed (rc $?)"
read -r SEEDS TESTS S1 S2 < <($PY - "$OUT_DIR/gpu_stage1.json" "$(left)" "$DESIGN_PROFILE" \
    "$DESIGN_CASES" "$REPRO/test_cohort" <<'EOF'
import json, sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from deeptree.config import reproduce_settings
from deeptree.evaluation.budget import CPU_STEP_SECONDS, GPU_STEP_SECONDS, size_to_budget
from deeptree.phantom import case_is_complete, generate_case, write_case

path, left, profile, cases, test_root = sys.argv[1], float(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
rates = dict(GPU_STEP_SECONDS if profile == "gpu" else CPU_STEP_SECONDS)
try:
    rates["stage1_it"] = 1.0 / float(json.load(open(path))["train_it_per_s"])
except Exception:
    pass
base = reproduce_settings(profile, n_cases=cases, validate=False, extra_seeds=1)
if profile == "gpu":
    s, estimate = size_to_budget(base, left - 60.0, rates)
else:  # the dry run: every step, tiny
    s, estimate = size_to_budget(base, 10**9, rates, designs=((2, 2),), floor=2)
    s = replace(s, stage1_train=replace(s.stage1_train, iterations=2),
                stage2_train=replace(s.stage2_train, iterations=2))
print(f"design: {len(s.seeds)} training seeds, {s.n_test} test phantoms, stage 1 "
      f"{s.stage1_train.iterations} it, stage 2 {s.stage2_train.iterations} it; estimate {estimate}",
      file=sys.stderr)
if profile == "gpu" and estimate["total"] > left - 60.0:
    print("the smallest design does not fit the time left: it runs anyway, cut by timeout",
          file=sys.stderr)

def make(i):  # the test phantoms in parallel, named and seeded as reproduce does
    case_id = f"TEST_{i:03d}"
    if not case_is_complete(test_root, case_id):
        write_case(generate_case(s.phantom, (s.test_seed, i), case_id=case_id), test_root)

with ProcessPoolExecutor(max_workers=12) as pool:
    list(pool.map(make, range(s.n_test)))
print(len(s.seeds), s.n_test, s.stage1_train.iterations, s.stage2_train.iterations)
EOF
)
echo "training seeds $SEEDS, test phantoms $TESTS, stage-1 iterations $S1, stage-2 iterations $S2"
# shellcheck disable=SC2086
timeout $(($(left) - 20)) $PY -m deeptree reproduce --profile "$DESIGN_PROFILE" --cases "$DESIGN_CASES" \
    $DESIGN_DEVICE --seeds "$SEEDS" --test-cases "$TESTS" --extra-seeds 1 \
    --stage1-iterations "$S1" --stage2-iterations "$S2" --no-validation --no-progress --out "$REPRO" \
    || echo "step 3 failed or timed out (rc $?)"
(cd "$WORK" && find . \( -name '*.json' -o -name '*.jsonl' -o -name '*.md' -o -name '*.csv' \
    -o -name '*.png' \) -not -path '*/cache/*' -not -path '*/cohort/*' -not -path '*/test_cohort/*' \
    -print0 | tar czf "$OUT_DIR/reproduce.tar.gz" --null -T -)
# ==== issue 18: the reproduction design at the gpu profile (end) ===============================
echo "== done in $(($(date +%s) - START)) s"
