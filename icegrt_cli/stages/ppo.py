"""`icegrt ppo`: the ICE-GRT PPO stage with actor, reference, reward model and critic (no
critic for the critic-free advantage estimators, `advantage=grpo|dr_grpo|rloo|reinforce_pp`).

Set-up: (1) runtime and tokenizers, (2) prompts that fit, (3) four models (three without a
critic), (4) optimisers, controller and statistics. Then the step driver runs the PPO steps,
each: (1) sample rollout.n responses per prompt, (2) score them without gradients, (3) shape
the scores, (4) turn them into per-token rewards, advantages and returns, (5) update actor
and critic, (6) adapt the KL coefficient, (7) report. The driver evaluates, checkpoints,
resumes and handles interrupts.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from rich.table import Table

from icegrt_cli.adapters import ADAPTER_DIR, FrozenModel, merged, policy_model
from icegrt_cli.atomic import remove_folder
from icegrt_cli.config import (
    GROUP_ESTIMATORS,
    KLConfig,
    needs_critic,
    resolve_kl,
    separate_critic,
)
from icegrt_cli.data.loading import require_text
from icegrt_cli.data.splits import load_splits
from icegrt_cli.engine import save_run_config, setup_runtime
from icegrt_cli.engine.attention import training_attention
from icegrt_cli.engine.driver import Cadence, Saved, StepDriver, StepFigures
from icegrt_cli.engine.engines import check_engine_settings, whole_parameters
from icegrt_cli.engine.loop import global_batches
from icegrt_cli.engine.runtime import Runtime, peak_memory_mb, seed_per_process
from icegrt_cli.errors import ConfigError, DataError
from icegrt_cli.models import checkpoint_context_length, load_tokenizer, materialize
from icegrt_cli.ppo.core import (
    KLController,
    RunningMeanStd,
    check_finite,
    logprobs_from_logits,
    make_kl_controller,
    masked_mean,
    shape_scores,
)
from icegrt_cli.ppo.evaluation import evaluate_policy, gold_figures
from icegrt_cli.ppo.experience import build_experience
from icegrt_cli.ppo.rollout import (
    decode_responses,
    logprobs_in_chunks,
    reward_rows,
    sample,
    values_in_chunks,
)
from icegrt_cli.ppo.setup import (
    announce_sampling,
    check_critic_tokenizer,
    fitting_prompts,
    learner,
    load_four_models,
    ptx_source,
    reward_stats,
)
from icegrt_cli.ppo.update import Learner, PtxLoss, first_pass, ppo_update
from icegrt_cli.ppo.value_head import VALUE_HEAD_FILE, save_value_head
from icegrt_cli.reward.scoring import score_sequences
from icegrt_cli.stages.common import (
    gathered_weights,
    resolve_model,
    save_model_folder,
    write_summary,
)
from icegrt_cli.stages.rerun import settings_of

NEGATIVE_KL_PATIENCE = 5
"""Consecutive steps of negative mean KL before warning: the sampler and scorer disagree."""


def check(cfg: DictConfig) -> None:
    """Settings errors found without loading anything (a pipeline runs this before its first
    stage)."""
    if cfg.rollout.temperature <= 0:
        raise ConfigError(
            f"rollout.temperature: must be > 0 for sampling, got {cfg.rollout.temperature}"
        )
    _check_advantage(cfg)
    kl = resolve_kl(cfg.kl, cfg.advantage.estimator)
    if not kl.in_reward and kl.kind != "none" and kl.estimator == "k1":
        # E_pi[grad (log pi - log pi_ref)] = E_pi[grad log pi] = 0: the term only adds noise.
        raise ConfigError(
            "kl.estimator=k1 with kl.in_reward=false: as a loss, k1's expected gradient is zero, "
            "so nothing would hold the policy near the reference; use kl.estimator=k2 (the "
            "gradient of KL(pi||pi_ref)) or k3 (of KL(pi_ref||pi)), or kl.in_reward=true"
        )
    # The engine's refusals (DeepSpeed with two trained models, LoRA with sharded weights)
    # before a pipeline spends its first stages; `icegrt plan` asks the same.
    check_engine_settings(cfg.engine.kind, trainable_models=trained_models(cfg), peft=cfg.peft.kind)
    if cfg.peft.kind != "none" and cfg.peft.dropout > 0:
        raise ConfigError(
            f"peft.dropout={cfg.peft.dropout}: PPO needs 0, or the update pass scores tokens "
            "differently from the rollout pass (the ratio is not 1 at lr 0)"
        )
    _check_ptx_data(cfg)


def _check_advantage(cfg: DictConfig) -> None:
    """Group sizes and critic settings the advantage estimator cannot use."""
    estimator, n = cfg.advantage.estimator, cfg.rollout.n
    if n < 1:
        raise ConfigError(f"rollout.n: responses per prompt must be >= 1, got {n}")
    if estimator in GROUP_ESTIMATORS and n < 2:
        raise ConfigError(
            f"advantage={estimator} needs rollout.n >= 2 responses per prompt (its baseline is "
            f"the rest of the group), got rollout.n={n}"
        )
    if not needs_critic(estimator) and cfg.ppo.critic_warmup_steps > 0:
        raise ConfigError(
            f"ppo.critic_warmup_steps={cfg.ppo.critic_warmup_steps} with advantage={estimator}: "
            "there is no critic to warm up; set it to 0, or use advantage=gae"
        )
    if cfg.ppo.shared_backbone and not needs_critic(estimator):
        raise ConfigError(
            f"ppo.shared_backbone=true with advantage={estimator}: the estimator learns no "
            "values to share a backbone with; set it to false, or use advantage=gae"
        )
    if cfg.ppo.shared_backbone and cfg.engine.kind != "ddp":
        raise ConfigError(
            f"ppo.shared_backbone=true with engine={cfg.engine.kind}: the value head on the "
            "actor runs under engine=ddp only for now (its sharded save is not written yet)"
        )
    if cfg.ppo.shared_backbone and cfg.ppo.critic_warmup_steps > 0:
        raise ConfigError(
            f"ppo.critic_warmup_steps={cfg.ppo.critic_warmup_steps} with ppo.shared_backbone=true:"
            " warming the value head up would train the policy's backbone on the value loss "
            "alone; set it to 0"
        )


def trained_models(cfg: DictConfig) -> int:
    """The actor, and the critic when the advantage estimator learns one in a model of its
    own."""
    return 2 if separate_critic(cfg) else 1


def _check_ptx_data(cfg: DictConfig) -> None:
    """PPO-ptx on the demo's demonstrations only makes sense for the demo's prompts: refuse to
    mix them silently into training on someone else's data."""
    if cfg.ppo.ptx_coef <= 0:
        return
    own_prompts = any(source.kind != "demo" for source in cfg.data.sources)
    demo_ptx = any(source.kind == "demo" for source in cfg.ptx_data.sources)
    if own_prompts and demo_ptx:
        raise ConfigError(
            f"ptx_data: PPO-ptx (ppo.ptx_coef={cfg.ppo.ptx_coef}) would train on the demo's "
            "demonstrations alongside your prompts; set ptx_data.sources to your SFT / general "
            "data, or ppo.ptx_coef=0"
        )


def run(cfg: DictConfig, out_dir: Path, run_root: Path | None) -> dict[str, Any]:
    started = time.perf_counter()
    # 1. Runtime, tokenizers.
    check(cfg)
    rt = setup_runtime(
        cfg.run, cfg.engine, trainable_models=trained_models(cfg), peft=cfg.peft.kind
    )
    policy_cfg = resolve_model(cfg.policy, run_root, "policy")
    rm_cfg = resolve_model(cfg.reward_model, run_root, "reward_model")
    tokenizer = load_tokenizer(policy_cfg)
    tokenizer.padding_side = "left"
    rm_tokenizer = load_tokenizer(rm_cfg)
    check_critic_tokenizer(cfg, tokenizer, rm_tokenizer)
    with rt.accelerator.main_process_first():  # one process writes, the others read it
        policy_path = materialize(policy_cfg, out_dir / "init_policy", cfg.run.seed)
        rm_path = materialize(rm_cfg, out_dir / "init_reward_model", cfg.run.seed)

    # 2. Prompts (and held-out prompts with ground truth where the data has it) that leave
    # room for a full response in both checkpoints' context.
    records, eval_records = load_splits(cfg.data, "prompts", require_text("prompt"), cfg.run.seed)
    context = min(
        checkpoint_context_length(policy_path, policy_cfg),
        checkpoint_context_length(rm_path, rm_cfg),
    )
    limit = context - cfg.rollout.max_new_tokens
    if limit < 1:
        raise ConfigError(
            f"rollout.max_new_tokens ({cfg.rollout.max_new_tokens}) leaves no room "
            f"for a prompt in the models' context of {context} tokens"
        )
    why = f"context {context} - rollout.max_new_tokens {cfg.rollout.max_new_tokens}"
    records, prompt_rows = fitting_prompts(rt, tokenizer, records, limit, "prompts", why)
    eval_records, _ = fitting_prompts(
        rt, tokenizer, eval_records[: cfg.train.eval_size], limit, "held-out prompts", why
    )
    if len(records) < cfg.rollout.batch_size * rt.world_size:
        raise DataError(f"ppo: {len(records)} usable prompts, fewer than one rollout batch")
    # Each process draws its own PTX rows; the generator is saved with every checkpoint.
    ptx_generator = torch.Generator().manual_seed(cfg.run.seed + 7919 * rt.rank)

    # 3. Four models: actor and frozen reference from the policy, frozen reward model, critic.
    models = load_four_models(
        cfg, policy_path, policy_cfg, rm_path, rm_cfg, tokenizer, rm_tokenizer
    )
    for frozen in (models.reference, models.reward_model):
        frozen.model.to(rt.device)
    rt.print(models.describe())
    seed_per_process(rt, cfg.run.seed)  # each process samples its own responses

    # 4. Optimisers, KL controller, running statistics; the step driver resumes them.
    # Recorded only now that data and models are good: a failed command leaves an earlier
    # run's config.yaml as it was.
    save_run_config(cfg, out_dir)
    job = PPOJob(
        rt,
        cfg,
        tokenizer,
        rm_tokenizer,
        records,
        prompt_rows,
        eval_records,
        learner(models.actor, cfg.ppo.lr, cfg, cfg.ppo.steps),
        None
        if models.critic is None
        else learner(models.critic, cfg.ppo.critic_lr, cfg, cfg.ppo.steps),
        models.reference,
        models.reward_model,
        make_kl_controller(cfg.kl.kind, cfg.kl.coef, cfg.kl.target, cfg.kl.horizon),
        reward_stats(rm_path, cfg.reward.normalize),
        torch.Generator().manual_seed(cfg.run.seed),
        ptx_generator,
        ptx_source(rt, cfg, tokenizer, ptx_generator, cfg.run.seed),
        out_dir / "samples.jsonl",
    )
    # A PPO step is a whole rollout and update: every one is logged.
    driver = StepDriver(
        rt,
        out_dir,
        "ppo",
        cfg.run,
        Cadence(
            cfg.ppo.steps,
            1,
            cfg.train.eval_every,
            cfg.train.save_every,
            cfg.train.keep_last,
            cfg.train.stop_after,
        ),
        settings_of(cfg),
    )
    driver.resume(job)
    job.prepare()
    with rt.accelerator.autocast(), whole_parameters(job.actor.model):
        gap = announce_sampling(rt, job.unwrapped_actor, tokenizer, prompt_rows, cfg)
    done = driver.drive(job)
    if done.stopped_early:
        return {"stage": "ppo", "steps": done.steps, "stopped_early": True}

    # 5. Save the actor (a plain causal LM folder) and the critic, if any; report before /
    # after.
    summary = {
        "stage": "ppo",
        "steps": done.steps,
        "eval_before": job.before,
        "eval_after": done.last_eval,
        "kl_beta": job.kl.value,
        "sampler_scorer_gap": gap,
        # config.yaml keeps `from_stage`; these are the folders it resolved to.
        "models": {"policy": _where(policy_path), "reward_model": _where(rm_path)},
        "peft": cfg.peft.kind,
        "advantage": cfg.advantage.estimator,
        "critic": job.critic is not None,
        "value_head_on_actor": job.shared,
        "episodes_per_step": cfg.rollout.batch_size * cfg.rollout.n * rt.world_size,
        "trainable_parameters": models.trainable(),
        "peak_memory_mb": peak_memory_mb(rt.device),
    }
    actor_weights = gathered_weights(rt, job.actor.model)  # collectives: every process
    critic_weights = None if job.critic is None else gathered_weights(rt, job.critic.model)
    if rt.is_main:
        tokenizer.padding_side = "right"
        actor = merged(job.unwrapped_actor, out_dir / ADAPTER_DIR)
        save_model_folder(actor, tokenizer, out_dir / "model", actor_weights)
        if job.critic is not None:
            critic_model = rt.accelerator.unwrap_model(job.critic.model)
            critic = merged(critic_model, out_dir / "critic_adapter")
            save_model_folder(critic, tokenizer, out_dir / "critic", critic_weights)
        else:  # a forced rerun without a critic: an earlier run's is not this actor's
            for stale in ("critic", "critic_adapter"):
                remove_folder(out_dir / stale)
        if job.shared:
            save_value_head(rt.accelerator.unwrap_model(job.actor.model), out_dir / VALUE_HEAD_FILE)
        else:
            (out_dir / VALUE_HEAD_FILE).unlink(missing_ok=True)
        summary["seconds"] = round(time.perf_counter() - started, 1)
        write_summary(out_dir, summary)
        rt.print(_before_after_table(job.before, done.last_eval))
    rt.accelerator.wait_for_everyone()
    return summary


class Laps:
    """Seconds spent in each named part of a step, as `time/<part>_s` figures."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, part: str | None = None) -> None:
        """Charge the time since the last lap to `part` (None: to nothing)."""
        now = time.perf_counter()
        if part is not None:
            self.seconds[f"time/{part}_s"] = now - self._last
        self._last = now


@dataclass
class PPOJob:
    """One PPO step on one rollout batch; what the step driver evaluates and checkpoints."""

    rt: Runtime
    cfg: DictConfig
    tokenizer: Any
    rm_tokenizer: Any
    records: list[dict[str, Any]]
    prompt_rows: list[list[int]]
    eval_records: list[dict[str, Any]]
    actor: Learner
    critic: Learner | None
    """None for the critic-free advantage estimators: not loaded, stepped or checkpointed."""
    reference: FrozenModel
    reward_model: FrozenModel
    kl: KLController
    stats: tuple[float | None, float | None]
    """The reward model's saved mean / std (reward.normalize=stats), else (None, None)."""
    generator: torch.Generator
    """Minibatch order; checkpointed."""
    ptx_generator: torch.Generator
    ptx_loss: PtxLoss | None
    samples_path: Path
    score_stats: RunningMeanStd = field(default_factory=RunningMeanStd)
    before: dict[str, float] = field(default_factory=dict)
    """Held-out figures before the first step (kept across a resume)."""
    negative_kl_streak: int = 0
    kl_cfg: KLConfig = field(init=False)
    """cfg.kl with its placement resolved for the advantage estimator."""

    def __post_init__(self) -> None:
        self.kl_cfg = resolve_kl(self.cfg.kl, self.cfg.advantage.estimator)

    def prepare(self) -> None:
        """Wrap the trainable models and their optimisers for the process group, one model
        per call (FSDP2 takes one model with its optimizer at a time)."""
        for trained in (self.actor, self.critic):
            if trained is not None:
                trained.model, trained.optimizer = self.rt.accelerator.prepare(
                    trained.model, trained.optimizer
                )

    @property
    def unwrapped_actor(self) -> torch.nn.Module:
        """The causal LM (with its adapters): what samples and what is saved."""
        return policy_model(self.rt.accelerator.unwrap_model(self.actor.model))

    @property
    def shared(self) -> bool:
        """The actor carries the value head (ppo.shared_backbone)."""
        return bool(self.cfg.ppo.shared_backbone)

    def step(self, step: int) -> StepFigures:
        """Sample, score and update on this process's rows of the step's global batch, every
        pass with one attention kernel: the update re-scores what scoring scored."""
        cfg = self.cfg
        global_size = cfg.rollout.batch_size * self.rt.world_size
        epoch, position = divmod(step, len(self.records) // global_size)
        ids = global_batches(len(self.records), global_size, epoch, cfg.run.seed)[position]
        mine = group_rows(ids, self.rt.rank, self.rt.world_size, cfg.rollout.n)
        rows = [self.prompt_rows[i] for i in mine]
        width = max(map(len, rows)) + cfg.rollout.max_new_tokens
        with training_attention(self.rt.device, width):
            return self._step(step, [self.records[i] for i in mine], rows)

    def _step(
        self, step: int, batch_records: list[dict[str, Any]], rows: list[list[int]]
    ) -> StepFigures:
        rt, cfg = self.rt, self.cfg
        t0 = time.perf_counter()
        global_size = cfg.rollout.batch_size * rt.world_size
        n = cfg.rollout.n

        # (1) Sample.
        laps = Laps()
        model = self.unwrapped_actor
        with whole_parameters(self.actor.model):
            seq = sample(model, self.tokenizer, rows, cfg.rollout)
        laps.lap("generate")
        texts = decode_responses(self.tokenizer, seq)
        prompts = [r["prompt"] for r in batch_records]

        # (2) Score: old and reference log-probs, values, reward-model scores. With one
        # minibatch per epoch the update's first forward passes give old log-probs and values.
        chunk, temperature = cfg.rollout.forward_batch_size, cfg.rollout.temperature
        update_actor = step >= cfg.ppo.critic_warmup_steps
        laps.lap()
        first = None
        if cfg.ppo.minibatch_size >= len(seq):
            model.train()
            first = first_pass(self.actor, self.critic, seq, update_actor, self.shared)
            laps.lap("first_pass")
        if first is not None and first.logits is not None:
            old_logp = logprobs_from_logits(first.logits.detach(), seq.response_ids, temperature)
        else:
            model.eval()
            old_logp, _ = logprobs_in_chunks(model, seq, temperature, chunk)
            laps.lap("score_old")
        with self.reference.use() as reference:
            ref_logp, _ = logprobs_in_chunks(reference, seq, temperature, chunk)
        laps.lap("score_ref")
        if self.critic is None and not self.shared:
            values = None
        elif first is not None:
            values = first.values.detach()
        else:
            scorer = self.actor if self.shared else self.critic
            values = values_in_chunks(scorer.model, seq, chunk, shared=self.shared)
            laps.lap("score_value")
        rm_rows = reward_rows(seq, self.tokenizer, self.rm_tokenizer, prompts)
        with self.reward_model.use() as reward_model:
            raw = score_sequences(reward_model, rm_rows, self.rm_tokenizer.pad_token_id, chunk)
        raw = raw.to(rt.device)
        laps.lap("score_reward")
        check_finite("reward-model score", raw, step + 1)

        # (3) Shape scores: truncation penalty, normalise, scale, clip.
        truncated = (~seq.has_eos).float()
        penalty = truncated * (
            cfg.rollout.truncated_penalty if cfg.rollout.truncated == "penalty" else 0.0
        )
        penalised = raw - penalty
        mean, std = self.stats
        if cfg.reward.normalize == "running":
            self.score_stats.update(rt.accelerator.gather(penalised))
            mean, std = self.score_stats.mean, self.score_stats.std
        scores = shape_scores(
            penalised, scale=cfg.reward.scale, mean=mean, std=std, clip=cfg.reward.clip
        )
        check_finite("shaped score", scores, step + 1)

        # (4) Per-token rewards, advantages, returns.
        beta = self.kl.value
        exp, adv_stats = build_experience(
            seq,
            old_logp,
            ref_logp,
            values,
            scores,
            beta,
            self.kl_cfg,
            cfg.ppo,
            self._sum_across,
            advantage=cfg.advantage,
            group_size=n,
            horizon=cfg.rollout.max_new_tokens,
        )
        check_finite("advantages", exp.advantages, step + 1)
        t_rollout = time.perf_counter() - t0

        # (5) Update actor (after the critic warm-up) and critic.
        model.train()
        update = ppo_update(
            exp,
            self.actor,
            self.critic,
            ppo=cfg.ppo,
            kl_cfg=self.kl_cfg,
            temperature=temperature,
            update_actor=update_actor,
            accelerator=rt.accelerator,
            generator=self.generator,
            step=step + 1,
            ptx_loss=self.ptx_loss,
            first=first,
            value_coef=cfg.ppo.value_coef if self.shared else None,
        )

        # (6) Adapt beta to the observed per-sequence KL.
        mask = seq.response_mask
        kl_mean = rt.accelerator.reduce((exp.kl * mask).sum(dim=1).mean(), reduction="mean").item()
        self.kl.update(kl_mean, global_size * n)

        # (7) Report: figures, warnings, samples.
        figures = {
            "rollout/score_raw": raw.mean().item(),
            "rollout/score": scores.mean().item(),
            "rollout/length": mask.sum(dim=1).float().mean().item(),
            "rollout/eos_rate": seq.has_eos.float().mean().item(),
            "rollout/truncated": truncated.mean().item(),
            "rollout/truncated_penalty": penalty.mean().item(),
            "kl/ref": kl_mean,
            "kl/k1": (((old_logp - ref_logp) * mask).sum(dim=1)).mean().item(),
            "kl/beta": beta,
            "kl/per_token": masked_mean(exp.kl, mask).item(),
            **adv_stats,
            **update,
            **{f"rollout/{k}": v for k, v in gold_figures(texts, batch_records).items()},
            "time/rollout_s": t_rollout,
            "time/update_s": time.perf_counter() - t0 - t_rollout,
            **laps.seconds,
        }
        # Averaged over the processes' equal rollout batches: the record describes the global
        # batch. The update's figures are global already, the same on every process.
        figures = rt.mean_over_processes(figures)
        self._warn_on_negative_kl(kl_mean)
        every = cfg.train.sample_every
        if rt.is_main and every and (step + 1) % every == 0:
            _save_samples(self.samples_path, step + 1, prompts, texts, raw, batch_records)
        shown = {
            k.split("/")[-1]: figures[k]
            for k in ("rollout/score_raw", "rollout/gold", "kl/ref", "kl/beta")
            if k in figures
        }
        return StepFigures(figures, shown)

    def _sum_across(self, t: torch.Tensor) -> torch.Tensor:
        """All-reduce sum over processes: advantages are whitened over the global batch."""
        return self.rt.accelerator.reduce(t, reduction="sum") if self.rt.world_size > 1 else t

    def _warn_on_negative_kl(self, kl_mean: float) -> None:
        self.negative_kl_streak = self.negative_kl_streak + 1 if kl_mean < -1e-3 else 0
        if self.negative_kl_streak == NEGATIVE_KL_PATIENCE:
            self.rt.print(
                "[yellow]warning: mean KL to the reference has been negative for "
                f"{NEGATIVE_KL_PATIENCE} steps: sampling and scoring distributions "
                "differ (top-k/top-p, temperature or padding)[/yellow]"
            )

    def evaluate(self, step: int) -> dict[str, float]:
        if not self.eval_records:
            return {}
        with self.reward_model.use() as reward_model, whole_parameters(self.actor.model):
            figures, _ = evaluate_policy(
                self.unwrapped_actor,
                self.tokenizer,
                self.eval_records,
                reward_model,
                self.rm_tokenizer,
                self.cfg.rollout,
                self.cfg.run.seed if self.cfg.train.eval_sampled else None,
            )
        if step == 0:
            self.before = figures
        return figures

    def checkpoint(self) -> Saved:
        learners = {"actor": self.actor, "critic": self.critic}
        present = {name: one for name, one in learners.items() if one is not None}
        return Saved(
            {name: one.model for name, one in present.items()},
            {
                f"{name}_{part}": getattr(one, part)
                for name, one in present.items()
                for part in ("optimizer", "scheduler")
            },
            {
                "kl": self.kl.state_dict(),
                "score_stats": self.score_stats.state_dict(),
                "generator": self.generator.get_state().tolist(),
                "eval_before": self.before,
            },
            {"ptx_generator": self.ptx_generator.get_state().tolist()},
        )

    def restore(self, state: dict[str, Any]) -> None:
        self.kl.load_state_dict(state["kl"])
        self.score_stats.load_state_dict(state["score_stats"])
        self.generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))
        # Each process's own PTX stream (older single-process checkpoints kept it in `state`).
        own = state.get("per_process", state)
        if "ptx_generator" in own:
            self.ptx_generator.set_state(torch.tensor(own["ptx_generator"], dtype=torch.uint8))
        self.before = state.get("eval_before", {})


def group_rows(ids: list[int], rank: int, world_size: int, n: int) -> list[int]:
    """This process's rollout rows: its share of the step's prompt `ids` (every world_size-th),
    each repeated `n` times in adjacent rows (a group). Groups are formed after the split
    between processes, so a group is never spread over two; all rows go to one generate call."""
    return [i for i in ids[rank::world_size] for _ in range(n)]


def _save_samples(
    path: Path,
    step: int,
    prompts: list[str],
    texts: list[str],
    scores: torch.Tensor,
    records: list[dict[str, Any]],
    count: int = 4,
) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        for prompt, text, score, record in list(
            zip(prompts, texts, scores.tolist(), records, strict=True)
        )[:count]:
            row = {"step": step, "prompt": prompt, "response": text, "score": score}
            row.update(gold_figures([text], [record]))
            handle.write(json.dumps(row) + "\n")


def _where(model: Path | str) -> str:
    """A local model folder as an absolute path; a hub name as it is."""
    return str(model.resolve()) if isinstance(model, Path) else model


def _before_after_table(before: dict[str, float], after: dict[str, float]) -> Table:
    table = Table(
        title="ppo: held-out prompts, greedy answers (sampled_*: at the rollout temperature)"
    )
    for column in ("metric", "before", "after", "change"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key in after:
        old, new = before.get(key), after[key]
        change = "" if old is None else f"{new - old:+.3f}"
        table.add_row(key, "" if old is None else f"{old:.3f}", f"{new:.3f}", change)
    return table
