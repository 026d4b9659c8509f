#!/usr/bin/env bash
# ICE-GRT on a real general chat model, offline: SmolLM2-135M-Instruct from the package index,
# made an ad-moderation expert by SFT (LoRA), a reward model and PPO, then evaluated side by side
# (base / SFT / PPO) on unseen ads and on real general benchmarks.
#
#   examples/smollm2/run.sh [--gpu] [--quick] [--root DIR]
#
#   --gpu     the same method at full size on a GPU: bf16, all data, more steps, all items
#   --quick   a few steps of everything: checks the whole path in minutes
#   --root    where the run goes (default runs); the run is ROOT/smollm2, its report ROOT/smollm2/report
#
# Stopped part-way? Run the same command again: finished stages are skipped.
set -eo pipefail  # no -u: empty arrays expand to nothing on every bash

ROOT=runs
SIZE=cpu
while (($#)); do
  case $1 in
    --gpu) SIZE=gpu ;;
    --quick) SIZE=quick ;;
    --root) ROOT=$2; shift ;;
    *) echo "usage: $0 [--gpu] [--quick] [--root DIR]" >&2; exit 2 ;;
  esac
  shift
done
ICEGRT=${ICEGRT:-icegrt}  # e.g. ICEGRT="python -m icegrt_cli.cli"
RUN=smollm2
$ICEGRT model fetch smollm2
BASE=${ICEGRT_CACHE:-$HOME/.cache/icegrt}/models/smollm2  # where model=smollm2 finds it
GENERAL=(arc_easy arc_challenge winogrande hellaswag)
$ICEGRT benchmarks fetch "${GENERAL[@]/#/--only=}"
start=$SECONDS

# LoRA on every projection. fp32 on CPU: without native bf16 (AVX512-BF16 / AMX) autocast is
# emulated and slower than fp32; on a GPU bf16 autocast over fp32 master weights.
COMMON=(run.root="$ROOT" run.name=$RUN peft=lora)
case $SIZE in
  quick)
    SFT=(train.max_steps=4 train.batch_size=4 train.eval_every=2 train.eval_batches=1
      train.save_every=2 data.sources.0.limit=64 data.sources.1.limit=16 sample_prompts=1)
    RM=(train.max_steps=4 train.batch_size=4 train.eval_every=0 train.eval_batches=1
      data.sources.0.limit=64 calibration_size=16)
    PPO=(ppo.steps=2 rollout.batch_size=4 ppo.minibatch_size=4 rollout.max_new_tokens=32
      train.eval_size=4 train.eval_every=1 train.save_every=0 ppo.ptx_batch_size=2)
    EVAL=(limit=8 task.ad_moderation.limit=8 max_new_tokens=32)
    ;;
  cpu)  # sized for about an hour on 2 CPU cores: see README.md beside this script
    SFT=(train.max_steps=60 train.batch_size=8 train.eval_every=30 train.eval_batches=4
      train.save_every=30 sample_prompts=2)
    RM=(train.max_steps=40 train.batch_size=8 train.eval_every=0 train.eval_batches=4
      calibration_size=64)
    PPO=(ppo.steps=16 rollout.batch_size=8 ppo.minibatch_size=8 rollout.max_new_tokens=128
      train.eval_size=16 train.eval_every=8 train.save_every=8 ppo.ptx_batch_size=4)
    EVAL=(limit=100 subsample=true task.ad_moderation.limit=60 max_new_tokens=128)
    ;;
  gpu)
    COMMON+=(run.precision=bf16)
    SFT=(train.epochs=2 train.batch_size=32 train.eval_every=100 train.save_every=200)
    RM=(train.epochs=1 train.batch_size=32)
    PPO=(ppo.steps=200 rollout.batch_size=64 ppo.minibatch_size=16 rollout.max_new_tokens=160
      train.eval_every=20 train.save_every=50)
    EVAL=(max_new_tokens=160)
    ;;
esac

# A stage whose folder holds summary.json is finished: a rerun of this script skips it.
stage() {
  local dir=$1; shift
  if [[ -f $ROOT/$RUN/$dir/summary.json ]]; then
    echo "$dir: already finished in $ROOT/$RUN/$dir; skipped"
  else
    $ICEGRT "$@"
  fi
}
stage sft sft "${COMMON[@]}" model=smollm2 optim.lr=1e-3 "${SFT[@]}"
stage train_rm train-rm "${COMMON[@]}" optim.lr=5e-4 "${RM[@]}"
stage ppo ppo "${COMMON[@]}" "${PPO[@]}"
TASKS="[ad_moderation,$(IFS=,; echo "${GENERAL[*]}")]"
stage eval eval run.root="$ROOT" run.name=$RUN "tasks=$TASKS" \
  "model.paths=[$BASE,$ROOT/$RUN/sft/model,$ROOT/$RUN/ppo/model]" "${EVAL[@]}"
$ICEGRT report "$ROOT/$RUN"
echo "smollm2 example ($SIZE): $(((SECONDS - start) / 60)) min after the fetches"
