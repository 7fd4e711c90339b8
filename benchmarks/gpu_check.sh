#!/usr/bin/env bash
# The GPU check: one command, about 8 minutes on one H200, run from anywhere in the repo:
#
#   bash benchmarks/gpu_check.sh             # on the GPU machine (no network needed)
#   bash benchmarks/gpu_check.sh --dry-run   # every part with tiny shapes on CPU (~2 min; tests/test_gpu_check.py)
#
# Writes $GPU_CHECK_OUT/gpu_check.md and gpu_check.json (default bench_results/), part by part: each part appends its
# section as soon as it is done, so a time limit loses only the parts after it. Each part runs under a time cap
# within a budget of $GPU_CHECK_BUDGET_S seconds (default 480); a failed or timed-out part is written down with the
# end of its log (in $OUT/logs/) and the next part runs. The parts (benchmarks/README.md says more):
#   1. training benchmark, model only (benchmark_gpu.py): ours, ours with the padded vocabulary, stock GPT-2, and
#      the padded one with Liger's fused linear + cross-entropy (CUDA only), all compiled, alternating rounds
#   2. the real path: accelerate launch of scripts/pretrain.py recipes/gpt2-124m.yaml, ~40 steps, its own logs
#   3. generation: static cache + compile against stock, batch 1 and 8 (benchmark_gpu.py)
#   4. correctness: logits and greedy tokens against stock GPT-2, and a resume from part 2's checkpoint
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=()
case "${1:-}" in
  --dry-run) DRY=(--dry-run) ;;
  "") ;;
  *) echo "usage: bash benchmarks/gpu_check.sh [--dry-run]" >&2; exit 2 ;;
esac
OUT=${GPU_CHECK_OUT:-bench_results}
BUDGET=${GPU_CHECK_BUDGET_S:-480}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's hf_gpt, whatever is installed
rm -rf "$OUT"/{benchmark_train.json,benchmark_generate.json,corpus,pretrain,resume,logs}
mkdir -p "$OUT/logs"

if (( ${#DRY[@]} )); then
  BUDGET=${GPU_CHECK_BUDGET_S:-900}
  BENCH=(--tiny --peak_tflops 1 --contenders ours/eager,ours-pad/eager,stock/eager,ours-pad+liger/eager)
  GEN=(--tiny --no_gen_compile)
  STEPS=12 SAVE=6 LOG=2 AFTER=2 TOKENS=4000
  LAUNCH=(--cpu --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no)
  TINY=(--preset gpt-tiny --config_overrides n_layers=2,emb_dim=32,n_heads=2,context_length=64 --max_length 64
        --per_device_train_batch_size 2 --torch_compile false --bf16 false --peak_tflops 1
        --dataloader_num_workers 0)
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # tiny shapes on shared cores: threads only wait on each other
  CAP1=240 CAP2=240 CAP3=240 CAP4=240
else
  # Micro-batch 16, the recipe's, so part 2's ratio compares like with like.
  BENCH=(--batch_size 16 --warmup_steps 3 --steps 8 --rounds 3
         --contenders ours/compiled,ours-pad/compiled,stock/compiled,ours-pad+liger/compiled)
  GEN=(--gen_batches 1,8 --new_tokens 128 --gen_rounds 2)
  STEPS=40 SAVE=20 LOG=5 AFTER=10 TOKENS=900000
  LAUNCH=(--config_file scripts/accelerate_configs/single_gpu.yaml)
  TINY=()
  CAP1=210 CAP2=150 CAP3=120 CAP4=110
fi

check() { python benchmarks/gpu_check.py --out "$OUT" "${DRY[@]}" "$@"; }

# part NAME CAP CMD...: run CMD under min(CAP, budget left) seconds, its output also in $OUT/logs; a failure goes
# into the report, and what the part wrote before it stopped is still reported after it. Returns CMD's exit code.
part() {
  local name=$1 cap=$2 left=$(( BUDGET - SECONDS )) rc
  shift 2
  (( left < cap )) && cap=$left
  local log="$OUT/logs/$(tr -c 'a-zA-Z0-9\n' _ <<< "$name").log"
  if (( cap < 20 )); then
    check failed "$name" --rc 124 --reason "not run: the ${BUDGET} s budget is spent"
    return 124
  fi
  echo "=== $name (at most $cap s; log: $log)"
  local start=$SECONDS
  timeout -k 10 "$cap" "$@" > "$log" 2>&1
  rc=$?
  tail -n 5 "$log"
  echo "=== $name: exit $rc after $(( SECONDS - start )) s"
  (( rc )) && check failed "$name" --rc "$rc" --log "$log"
  return "$rc"
}

check header || exit 1

# 1. The training benchmark (model only).
part "1. Training benchmark" "$CAP1" python benchmarks/benchmark_gpu.py --part train "${BENCH[@]}" \
    --out "$OUT/benchmark_train.json"
[[ -f "$OUT/benchmark_train.json" ]] && check report-train "$OUT/benchmark_train.json"

# 2. The real path: the recipe through accelerate, on a synthetic corpus written first (no download).
RUN_ARGS=(recipes/gpt2-124m.yaml "${TINY[@]}" --train_files "$OUT/corpus" --max_steps "$STEPS"
          --gradient_accumulation_steps 1 --warmup_steps 10 --logging_steps "$LOG" --save_steps "$SAVE"
          --validation_fraction 0 --eval_strategy no --eval_on_start false --report_to none)
check corpus "$OUT/corpus" --tokens "$TOKENS" &&
part "2. The real path" "$CAP2" python -m accelerate.commands.launch "${LAUNCH[@]}" benchmarks/gpu_check.py pretrain \
    "${RUN_ARGS[@]}" --output_dir "$OUT/pretrain" --overwrite_output_dir
[[ -f "$OUT/pretrain/trainer_state.json" ]] &&
  check report-pretrain "$OUT/pretrain" --bench "$OUT/benchmark_train.json" --after "$AFTER"

# 3. Generation.
part "3. Generation" "$CAP3" python benchmarks/benchmark_gpu.py --part generate "${GEN[@]}" \
    --out "$OUT/benchmark_generate.json"
[[ -f "$OUT/benchmark_generate.json" ]] && check report-generate "$OUT/benchmark_generate.json"

# 4. Correctness: logits and greedy tokens; then part 2's run resumed from its checkpoint, with scripts/pretrain.py.
part "4. Correctness" 60 python benchmarks/gpu_check.py --out "$OUT" "${DRY[@]}" correctness
if [[ -d "$OUT/pretrain/checkpoint-$SAVE" ]]; then
  mkdir -p "$OUT/resume" && cp -r "$OUT/pretrain/checkpoint-$SAVE" "$OUT/resume/"
  part "4. Kill and resume" "$CAP4" python -m accelerate.commands.launch "${LAUNCH[@]}" scripts/pretrain.py \
      "${RUN_ARGS[@]}" --output_dir "$OUT/resume" --resume_from_checkpoint last
  [[ -f "$OUT/resume/trainer_state.json" ]] && check report-resume "$OUT/pretrain" "$OUT/resume" --from_step "$SAVE"
else
  check failed "4. Kill and resume" --reason "part 2 left no checkpoint-$SAVE"
fi

check goals
echo "wrote $OUT/gpu_check.md and $OUT/gpu_check.json in $SECONDS s"
