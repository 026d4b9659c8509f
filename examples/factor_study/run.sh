#!/usr/bin/env bash
# The ICE-GRT factor study on the embedded demo: one PPO sweep per factor the paper names, each
# changing only that factor from a shared baseline, then one report over all of them.
#
#   examples/factor_study/run.sh [--quick] [--jobs N] [--root DIR]
#
#   --quick   tiny models, a few steps, three eval tasks: checks the whole study in minutes
#   --jobs N  run the jobs of each sweep N at a time (Hydra's joblib launcher)
#   --root    where the runs go (default runs/factor_study); the report: ROOT/study/report/
#
# Stopped part-way? Run the same command again: finished stages are skipped.
set -eo pipefail  # no -u: empty arrays expand to nothing on every bash

ROOT=runs/factor_study
JOBS=1
QUICK=false
while (($#)); do
  case $1 in
    --quick) QUICK=true ;;
    --jobs) JOBS=$2; shift ;;
    --root) ROOT=$2; shift ;;
    *) echo "usage: $0 [--quick] [--jobs N] [--root DIR]" >&2; exit 2 ;;
  esac
  shift
done
ICEGRT=${ICEGRT:-icegrt}  # e.g. ICEGRT="python -m icegrt_cli.cli"

COMMON=()
if $QUICK; then
  COMMON+=(run.progress=false
    sft.model.hidden_size=32 sft.model.num_layers=1 sft.model.num_heads=2
    sft.model.intermediate_size=64 sft.data.sources.0.limit=120 sft.data.sources.1.limit=40
    sft.train.max_steps=20 sft.train.batch_size=8 sft.sample_prompts=1
    train_rm.data.sources.0.limit=96 train_rm.train.max_steps=4 train_rm.train.batch_size=4
    train_rm.train.eval_every=0 train_rm.calibration_size=16
    ppo.ppo.steps=3 ppo.rollout.batch_size=8 ppo.rollout.max_new_tokens=16
    ppo.ppo.minibatch_size=4 ppo.data.sources.0.limit=64 ppo.train.eval_size=8
    ppo.train.eval_every=1 ppo.train.save_every=0
    ppo.ptx_data.sources.0.limit=64 ppo.ptx_data.sources.1.limit=64 ppo.ppo.ptx_batch_size=4
    'eval.tasks=[ad_moderation,general_demo,arc_easy]' eval.limit=8
    eval.task.ad_moderation.limit=8 eval.task.general_demo.limit=8 eval.max_new_tokens=32)
fi
SWEEP=(run.root="$ROOT/study")
if ((JOBS > 1)); then
  CORES=$(getconf _NPROCESSORS_ONLN)
  SWEEP+=(hydra/launcher=joblib hydra.launcher.n_jobs="$JOBS" run.progress=false
    run.num_threads=$((CORES / JOBS > 0 ? CORES / JOBS : 1)))
fi

# 1. The shared base: one SFT model and a reward model trained from it. Every sweep links these
#    folders in (reuse_from) instead of retraining; the reward-size sweep takes the SFT model only.
$ICEGRT pipeline run.root="$ROOT" run.name=shared 'stages=[sft,train_rm]' "${COMMON[@]}"
$ICEGRT pipeline run.root="$ROOT" run.name=shared_sft reuse_from="$ROOT/shared" 'stages=[sft]' \
  "${COMMON[@]}"

# 2. The baseline: plain PPO - fixed KL penalty, whitened advantages, normalised-then-clipped
#    rewards (reward=running_norm), the SFT-initialised reward model, and no PPO-ptx (the
#    tool's default turns PPO-ptx on; the study keeps it off so each factor is measured alone).
PLAIN=(ppo.ppo.ptx_coef=0)
$ICEGRT pipeline run.root="$ROOT/study" run.name=baseline reuse_from="$ROOT/shared" \
  "${PLAIN[@]}" "${COMMON[@]}"

# 3. One sweep per factor, each over the values other than the baseline's. Each sweep's folder
#    is pinned (hydra.sweep.dir) instead of dated, so running the script again continues it:
#    finished stages are skipped.
# KL control: no penalty, or the adaptive controller (Ziegler et al.) instead of a fixed one.
$ICEGRT pipeline -m run.name=kl hydra.sweep.dir="$ROOT/study/kl" \
  reuse_from="$ROOT/shared" ppo.kl=none,adaptive \
  "${PLAIN[@]}" "${SWEEP[@]}" "${COMMON[@]}"
# Advantage normalisation off.
$ICEGRT pipeline -m run.name=advantage_norm hydra.sweep.dir="$ROOT/study/advantage_norm" \
  reuse_from="$ROOT/shared" \
  ppo.ppo.advantage_norm=false "${PLAIN[@]}" "${SWEEP[@]}" "${COMMON[@]}"
# Reward shaping: the raw score, a constant scale, a clip, and the reward model's own
#    statistics instead of running ones.
$ICEGRT pipeline -m run.name=reward_shaping hydra.sweep.dir="$ROOT/study/reward_shaping" \
  reuse_from="$ROOT/shared" \
  ppo.reward=none,scale,clip,stats_norm \
  "${PLAIN[@]}" "${SWEEP[@]}" "${COMMON[@]}"
# PPO-ptx: add the language-model loss on SFT and general demonstrations to the actor's loss
#    (the value the tool uses by default).
$ICEGRT pipeline -m run.name=ptx hydra.sweep.dir="$ROOT/study/ptx" \
  reuse_from="$ROOT/shared" ppo.ppo.ptx_coef=0.2 \
  "${SWEEP[@]}" "${COMMON[@]}"

# Advantage estimator: the critic-free estimators (no critic is loaded) and, as the control,
#    GAE, all five sampling 4 responses for each of 8 prompts a step: 32 episodes, as the
#    baseline's 32 prompts x 1, and one sampling scheme, so the estimator is the one change.
#    KL goes where each estimator puts it: k3 in the loss (grpo, dr_grpo), k1 in the reward
#    (gae, rloo, reinforce_pp). One run per estimator, each in its own folder.
GROUP_COMMON=()
for item in "${COMMON[@]}"; do
  [[ $item == ppo.rollout.batch_size=* ]] || GROUP_COMMON+=("$item")
done
if $QUICK; then PROMPTS=2; else PROMPTS=8; fi
for estimator in gae grpo dr_grpo rloo reinforce_pp; do
  $ICEGRT pipeline run.root="$ROOT/study/advantage" run.name="$estimator" \
    reuse_from="$ROOT/shared" ppo.advantage="$estimator" ppo.rollout.n=4 \
    ppo.rollout.batch_size=$PROMPTS "${PLAIN[@]}" "${GROUP_COMMON[@]}"
done

# Reward-model size: a reward model of each preset size trained per job (the critic starts
#    from it), for the same tiny actor.
$ICEGRT pipeline -m run.name=reward_size hydra.sweep.dir="$ROOT/study/reward_size" \
  reuse_from="$ROOT/shared_sft" \
  train_rm.reward_model=tiny,small,base "${PLAIN[@]}" "${SWEEP[@]}" "${COMMON[@]}"

# 4. The report: table, differing factors and plots in ROOT/study/report/.
$ICEGRT report "$ROOT/study"
