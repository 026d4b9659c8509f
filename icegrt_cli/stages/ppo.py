"""`icegrt ppo`: the ICE-GRT PPO stage with actor, reference, reward model and critic.

Each step: (1) sample responses, (2) score them without gradients, (3) shape the scores,
(4) turn them into per-token rewards, advantages and returns, (5) update actor and critic,
(6) adapt the KL coefficient, (7) log, evaluate and checkpoint.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from rich.table import Table

from icegrt_cli.config import OptimConfig
from icegrt_cli.data.collate import LMCollator
from icegrt_cli.data.formatting import check_sft_record, encode_prompt, encode_sft
from icegrt_cli.data.limits import length_note, within_limit
from icegrt_cli.data.loading import require_text
from icegrt_cli.data.splits import load_splits
from icegrt_cli.engine import Checkpointer, MetricsLogger, save_run_config, setup_runtime
from icegrt_cli.engine.checkpoint import load_checkpoint
from icegrt_cli.engine.loop import global_batches
from icegrt_cli.engine.optim import build_optimizer, build_scheduler
from icegrt_cli.engine.progress import StepProgress
from icegrt_cli.errors import ConfigError, DataError, RunInterrupted
from icegrt_cli.lm import describe_decoding, isolated_seed, lm_loss_sum
from icegrt_cli.models import (
    checkpoint_context_length,
    load_causal_lm,
    load_scalar_model,
    load_tokenizer,
    materialize,
)
from icegrt_cli.ppo.core import (
    RunningMeanStd,
    check_finite,
    make_kl_controller,
    masked_mean,
    shape_scores,
)
from icegrt_cli.ppo.evaluation import evaluate_policy, gold_figures
from icegrt_cli.ppo.experience import build_experience
from icegrt_cli.ppo.rollout import (
    decode_responses,
    generation_config,
    logprobs_in_chunks,
    reward_rows,
    sample,
    sampler_scorer_gap,
    values_in_chunks,
)
from icegrt_cli.ppo.update import Learner, ppo_update
from icegrt_cli.reward.scoring import score_sequences
from icegrt_cli.stages.common import resolve_model, write_summary

NEGATIVE_KL_PATIENCE = 5
"""Consecutive steps of negative mean KL before warning: the sampler and scorer disagree."""


def _frozen(model: torch.nn.Module) -> torch.nn.Module:
    model.eval()
    model.requires_grad_(False)
    return model


def _learner(rt: Any, model: torch.nn.Module, lr: float, cfg: DictConfig, steps: int) -> Learner:
    optim = OptimConfig(lr=lr, weight_decay=cfg.ppo.weight_decay, scheduler="constant",
                        warmup_steps=0, warmup_ratio=0.0, max_grad_norm=cfg.ppo.max_grad_norm)
    optimizer = build_optimizer(model.parameters(), optim)
    scheduler = build_scheduler(optimizer, optim, steps)
    return Learner(model, optimizer, scheduler, cfg.ppo.max_grad_norm)


def _reward_stats(rm_path: Path | str, normalize: str) -> tuple[float | None, float | None]:
    """The reward model's calibration statistics, required (loudly) by reward.normalize=stats."""
    if normalize != "stats":
        return None, None
    path = Path(rm_path) / "reward_stats.json"
    if not path.exists():
        raise ConfigError(f"reward.normalize=stats: {path} not found; train the reward model with "
                          "icegrt train-rm, or choose reward=running_norm")
    stats = json.loads(path.read_text())
    return float(stats["mean"]), float(stats["std"])


def _check_critic_tokenizer(cfg: DictConfig, tokenizer: Any, rm_tokenizer: Any) -> None:
    if cfg.ppo.critic_init == "reward_model" and tokenizer.get_vocab() != rm_tokenizer.get_vocab():
        raise ConfigError("ppo.critic_init=reward_model: the reward model's tokenizer differs from "
                          "the policy's, and the critic reads policy tokens; use "
                          "ppo.critic_init=policy")


TRUNCATED = ("score", "penalty")


def check(cfg: DictConfig) -> None:
    """Settings errors found without loading anything (a pipeline runs this before its first
    stage)."""
    if cfg.rollout.temperature <= 0:
        raise ConfigError(f"rollout.temperature: must be > 0 for sampling, got "
                          f"{cfg.rollout.temperature}")
    if cfg.rollout.truncated not in TRUNCATED:
        raise ConfigError(f"rollout.truncated: '{cfg.rollout.truncated}' is not "
                          f"{'|'.join(TRUNCATED)}")
    if cfg.reward.normalize not in ("none", "running", "stats"):
        raise ConfigError(f"reward.normalize: '{cfg.reward.normalize}' is not none|running|stats")
    if cfg.ppo.critic_init not in ("reward_model", "policy"):
        raise ConfigError(f"ppo.critic_init: '{cfg.ppo.critic_init}' is not reward_model|policy")
    if not cfg.kl.in_reward and cfg.kl.kind != "none" and cfg.kl.estimator == "k1":
        # E_pi[grad (log pi - log pi_ref)] = E_pi[grad log pi] = 0: the term only adds noise.
        raise ConfigError(
            "kl.estimator=k1 with kl.in_reward=false: as a loss, k1's expected gradient is zero, "
            "so nothing would hold the policy near the reference; use kl.estimator=k2 (the "
            "gradient of KL(pi||pi_ref)) or k3 (of KL(pi_ref||pi)), or kl.in_reward=true"
        )
    _check_ptx_data(cfg)


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


def _fitting_prompts(
    rt: Any, tokenizer: Any, records: list[dict[str, Any]], limit: int, what: str, why: str,
) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """The records whose templated prompt fits `limit` tokens, and their token ids; the rest
    are counted and said."""
    rows = [encode_prompt(tokenizer, r["prompt"]) for r in records]
    keep = within_limit([len(row) for row in rows], limit)
    if note := length_note(what, len(rows) - len(keep), len(rows), limit, why):
        rt.print(f"[yellow]ppo: {note}[/yellow]")
    return [records[i] for i in keep], [rows[i] for i in keep]


def _ptx_source(rt: Any, cfg: DictConfig, tokenizer: Any, generator: torch.Generator, seed: int):
    """A supply of LM-loss batches for PPO-ptx drawn with `generator` (checkpointed, so a
    resumed run draws the same batches), or None when the coefficient is 0."""
    if cfg.ppo.ptx_coef <= 0:
        return None
    records, _ = load_splits(cfg.ptx_data, "sft", check_sft_record, seed)
    every = [encode_sft(tokenizer, r) for r in records]
    encoded = [every[i] for i in within_limit([len(e.input_ids) for e in every],
                                              cfg.ptx_data.max_length)]
    if note := length_note("PPO-ptx examples", len(every) - len(encoded), len(every),
                           cfg.ptx_data.max_length, "ptx_data.max_length"):
        rt.print(f"[yellow]ppo: {note}[/yellow]")
    if not encoded:
        raise DataError("ptx_data: no example fits ptx_data.max_length")
    collate = LMCollator(tokenizer.pad_token_id)
    size = cfg.ppo.ptx_batch_size

    def next_loss(model: torch.nn.Module) -> torch.Tensor:
        rows = torch.randint(len(encoded), (size,), generator=generator).tolist()
        batch = collate([encoded[i] for i in rows])
        device = next(model.parameters()).device
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        return lm_loss_sum(model, batch) / batch["weight"].clamp(min=1)

    return next_loss


GAP_TOLERANCE = 1e-3
"""Largest sampler / scorer log-prob difference that is float noise (fp32 KV cache vs a full
forward pass); above it the samples come from another distribution than the one scored."""


def _announce_sampling(
    rt: Any, actor: torch.nn.Module, tokenizer: Any, prompt_rows: list[list[int]], cfg: DictConfig
) -> float:
    """Say once what generation runs with, and check on a few prompts (from a fixed seed, the
    training streams untouched) that the sampler draws from the distribution PPO scores."""
    rt.print(describe_decoding(actor, generation_config(cfg.rollout, tokenizer)))
    with isolated_seed(cfg.run.seed, rt.device):
        gap = sampler_scorer_gap(actor, tokenizer, prompt_rows[:4], cfg.rollout)
    truncation = (cfg.rollout.truncated_penalty if cfg.rollout.truncated == "penalty" else 0.0)
    rt.print(f"sampler vs scorer: max |log-prob difference| {gap:.1e} on 4 prompts; truncated "
             f"responses scored as they are, minus {truncation:g}")
    if gap > GAP_TOLERANCE:
        cut = " (expected with rollout.top_k / rollout.top_p)" if (
            cfg.rollout.top_k or cfg.rollout.top_p < 1) else ""
        rt.print(f"[yellow]warning: samples are not drawn from the scored distribution{cut}: "
                 "PPO's ratios and KL are biased[/yellow]")
    return gap


def run(cfg: DictConfig, out_dir: Path, run_root: Path | None) -> dict[str, Any]:
    # 1. Runtime, configs, tokenizers.
    check(cfg)
    rt = setup_runtime(cfg.run)
    save_run_config(cfg, out_dir)
    policy_cfg = resolve_model(cfg.policy, run_root, "policy")
    rm_cfg = resolve_model(cfg.reward_model, run_root, "reward_model")
    tokenizer = load_tokenizer(policy_cfg)
    tokenizer.padding_side = "left"
    rm_tokenizer = load_tokenizer(rm_cfg)
    _check_critic_tokenizer(cfg, tokenizer, rm_tokenizer)

    policy_path = materialize(policy_cfg, out_dir / "init_policy", cfg.run.seed)
    rm_path = materialize(rm_cfg, out_dir / "init_reward_model", cfg.run.seed)

    # 2. Prompts (and held-out prompts with ground truth where the data has it) that leave
    # room for a full response in both checkpoints' context.
    records, eval_records = load_splits(cfg.data, "prompts", require_text("prompt"), cfg.run.seed)
    context = min(checkpoint_context_length(policy_path, policy_cfg),
                  checkpoint_context_length(rm_path, rm_cfg))
    limit = context - cfg.rollout.max_new_tokens
    if limit < 1:
        raise ConfigError(f"rollout.max_new_tokens ({cfg.rollout.max_new_tokens}) leaves no room "
                          f"for a prompt in the models' context of {context} tokens")
    why = f"context {context} - rollout.max_new_tokens {cfg.rollout.max_new_tokens}"
    records, prompt_rows = _fitting_prompts(rt, tokenizer, records, limit, "prompts", why)
    eval_records, _ = _fitting_prompts(rt, tokenizer, eval_records[: cfg.train.eval_size], limit,
                                       "held-out prompts", why)
    if len(records) < cfg.rollout.batch_size * rt.world_size:
        raise DataError(f"ppo: {len(records)} usable prompts, fewer than one rollout batch")
    # Each process draws its own PTX rows; the generator is saved with every checkpoint.
    ptx_generator = torch.Generator().manual_seed(cfg.run.seed + 7919 * rt.rank)
    ptx_loss = _ptx_source(rt, cfg, tokenizer, ptx_generator, cfg.run.seed)

    # 3. Four models: actor and frozen reference from the policy, frozen reward model, critic.
    actor = load_causal_lm(policy_path, policy_cfg, tokenizer)
    reference = _frozen(load_causal_lm(policy_path, policy_cfg, tokenizer))
    reward_model = _frozen(load_scalar_model(rm_path, rm_cfg, rm_tokenizer))
    critic_path = rm_path if cfg.ppo.critic_init == "reward_model" else policy_path
    critic = load_scalar_model(critic_path, rm_cfg if critic_path == rm_path else policy_cfg,
                               tokenizer)
    stats_mean, stats_std = _reward_stats(rm_path, cfg.reward.normalize)
    for model in (reference, reward_model):
        model.to(rt.device)

    # 4. Optimisers, controller, running statistics; resume.
    steps = cfg.ppo.steps
    actor_l = _learner(rt, actor, cfg.ppo.lr, cfg, steps)
    critic_l = _learner(rt, critic, cfg.ppo.critic_lr, cfg, steps)
    kl_ctl = make_kl_controller(cfg.kl.kind, cfg.kl.coef, cfg.kl.target, cfg.kl.horizon)
    score_stats = RunningMeanStd()
    generator = torch.Generator().manual_seed(cfg.run.seed)
    ckpt = Checkpointer(out_dir / "checkpoints", cfg.train.keep_last, rt.is_main)
    start = 0
    before: dict[str, float] = {}
    resume_from = ckpt.resolve(cfg.run.resume)
    if resume_from is None and ckpt.clear():
        rt.print(f"removed the checkpoints of an earlier run in {ckpt.folder}")
    if resume_from is not None:
        state = load_checkpoint(
            resume_from, {"actor": actor, "critic": critic},
            {"actor_optimizer": actor_l.optimizer, "actor_scheduler": actor_l.scheduler,
             "critic_optimizer": critic_l.optimizer, "critic_scheduler": critic_l.scheduler},
        )
        start = state["step"]
        before = state.get("eval_before", {})
        kl_ctl.load_state_dict(state["kl"])
        score_stats.load_state_dict(state["score_stats"])
        generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))
        if "ptx_generator" in state:
            ptx_generator.set_state(torch.tensor(state["ptx_generator"], dtype=torch.uint8))
        rt.print(f"resumed from {resume_from} at step {start}")
    actor_l.model, actor_l.optimizer, critic_l.model, critic_l.optimizer = rt.accelerator.prepare(
        actor, actor_l.optimizer, critic, critic_l.optimizer
    )
    logger = MetricsLogger(out_dir, rt.is_main, cfg.run.tensorboard,
                           resume_step=start if resume_from else None)
    unwrap = rt.accelerator.unwrap_model

    def sum_across(t: torch.Tensor) -> torch.Tensor:
        return rt.accelerator.reduce(t, reduction="sum") if rt.world_size > 1 else t

    def held_out(step: int) -> dict[str, float]:
        if not eval_records:
            return {}
        figures, _ = evaluate_policy(
            unwrap(actor_l.model), tokenizer, eval_records, reward_model, rm_tokenizer,
            cfg.rollout, cfg.run.seed if cfg.train.eval_sampled else None,
        )
        logger.log(step, {f"eval/{k}": v for k, v in figures.items()})
        return figures

    def save(step: int) -> None:
        ckpt.save(
            step, {"actor": unwrap(actor_l.model), "critic": unwrap(critic_l.model)},
            {"actor_optimizer": actor_l.optimizer, "actor_scheduler": actor_l.scheduler,
             "critic_optimizer": critic_l.optimizer, "critic_scheduler": critic_l.scheduler},
            {"kl": kl_ctl.state_dict(), "score_stats": score_stats.state_dict(),
             "generator": generator.get_state().tolist(),
             "ptx_generator": ptx_generator.get_state().tolist(), "eval_before": before},
        )

    gap = _announce_sampling(rt, unwrap(actor_l.model), tokenizer, prompt_rows, cfg)
    if start == 0:
        before = held_out(0)
    negative_kl_streak = 0
    global_size = cfg.rollout.batch_size * rt.world_size
    batches_per_epoch = len(records) // global_size
    step = start
    samples_path = out_dir / "samples.jsonl"
    try:
        with StepProgress(rt.console, "ppo", steps, start, cfg.run.progress and rt.is_main) as bar:
            while step < steps:
                t0 = time.perf_counter()
                epoch, position = divmod(step, batches_per_epoch)
                ids = global_batches(len(records), global_size, epoch, cfg.run.seed)[position]
                ids = ids[rt.rank :: rt.world_size]
                batch_records = [records[i] for i in ids]

                # (1) Sample.
                model = unwrap(actor_l.model)
                seq = sample(model, tokenizer, [prompt_rows[i] for i in ids], cfg.rollout)
                texts = decode_responses(tokenizer, seq)
                prompts = [r["prompt"] for r in batch_records]

                # (2) Score: old and reference log-probs, values, reward-model scores.
                chunk = cfg.rollout.forward_batch_size
                model.eval()
                old_logp, _ = logprobs_in_chunks(model, seq, cfg.rollout.temperature, chunk)
                ref_logp, _ = logprobs_in_chunks(reference, seq, cfg.rollout.temperature, chunk)
                values = values_in_chunks(unwrap(critic_l.model), seq, chunk)
                rm_rows = reward_rows(seq, tokenizer, rm_tokenizer, prompts)
                raw = score_sequences(reward_model, rm_rows, rm_tokenizer.pad_token_id, chunk)
                raw = raw.to(rt.device)
                check_finite("reward-model score", raw, step + 1)

                # (3) Shape scores: truncation penalty, normalise, scale, clip.
                truncated = (~seq.has_eos).float()
                penalty = truncated * (cfg.rollout.truncated_penalty
                                       if cfg.rollout.truncated == "penalty" else 0.0)
                penalised = raw - penalty
                mean, std = stats_mean, stats_std
                if cfg.reward.normalize == "running":
                    score_stats.update(rt.accelerator.gather(penalised))
                    mean, std = score_stats.mean, score_stats.std
                scores = shape_scores(penalised, scale=cfg.reward.scale, mean=mean, std=std,
                                      clip=cfg.reward.clip)
                check_finite("shaped score", scores, step + 1)

                # (4) Per-token rewards, advantages, returns.
                beta = kl_ctl.value
                exp, adv_stats = build_experience(
                    seq, old_logp, ref_logp, values, scores, beta, cfg.kl, cfg.ppo, sum_across
                )
                check_finite("advantages", exp.advantages, step + 1)
                t_rollout = time.perf_counter() - t0

                # (5) Update actor (after the critic warm-up) and critic.
                model.train()
                update = ppo_update(
                    exp, actor_l, critic_l, ppo=cfg.ppo, kl_cfg=cfg.kl, beta=beta,
                    temperature=cfg.rollout.temperature,
                    update_actor=step >= cfg.ppo.critic_warmup_steps,
                    accelerator=rt.accelerator, generator=generator, step=step + 1,
                    ptx_loss=ptx_loss,
                )

                # (6) Adapt beta to the observed per-sequence KL.
                mask = seq.response_mask
                kl_seq = (exp.kl * mask).sum(dim=1)
                kl_mean = rt.accelerator.reduce(kl_seq.mean(), reduction="mean").item()
                kl_ctl.update(kl_mean, global_size)
                step += 1

                # (7) Log, sample, evaluate, checkpoint.
                lengths = mask.sum(dim=1)
                figures = {
                    "rollout/score_raw": raw.mean().item(),
                    "rollout/score": scores.mean().item(),
                    "rollout/length": lengths.float().mean().item(),
                    "rollout/eos_rate": seq.has_eos.float().mean().item(),
                    "rollout/truncated": truncated.mean().item(),
                    "rollout/truncated_penalty": penalty.mean().item(),
                    "kl/ref": kl_mean,
                    "kl/k1": (((old_logp - ref_logp) * mask).sum(dim=1)).mean().item(),
                    "kl/beta": beta,
                    "kl/per_token": masked_mean(exp.kl, mask).item(),
                    **adv_stats, **update,
                    "time/rollout_s": t_rollout,
                    "time/update_s": time.perf_counter() - t0 - t_rollout,
                }
                figures.update({f"rollout/{k}": v
                                for k, v in gold_figures(texts, batch_records).items()})
                logger.log(step, figures)
                negative_kl_streak = negative_kl_streak + 1 if kl_mean < -1e-3 else 0
                if negative_kl_streak == NEGATIVE_KL_PATIENCE:
                    rt.print("[yellow]warning: mean KL to the reference has been negative for "
                             f"{NEGATIVE_KL_PATIENCE} steps: sampling and scoring distributions "
                             "differ (top-k/top-p, temperature or padding)[/yellow]")
                if rt.is_main and cfg.train.sample_every and step % cfg.train.sample_every == 0:
                    _save_samples(samples_path, step, prompts, texts, raw, batch_records)
                bar.advance({k.split("/")[-1]: figures[k] for k in (
                    "rollout/score_raw", "rollout/gold", "kl/ref", "kl/beta") if k in figures})
                if cfg.train.eval_every and step % cfg.train.eval_every == 0 and step < steps:
                    held_out(step)
                if cfg.train.save_every and step % cfg.train.save_every == 0 and step < steps:
                    save(step)
                if cfg.train.stop_after and step >= cfg.train.stop_after and step < steps:
                    save(step)
                    rt.print(f"ppo: stopped after step {step} (train.stop_after); checkpoint kept")
                    return {"stage": "ppo", "steps": step, "stopped_early": True}
        after = held_out(step)
    except KeyboardInterrupt as interrupt:
        save(step)
        raise RunInterrupted(f"interrupted at step {step}; checkpoint saved in {ckpt.latest()}: "
                             "rerun with run.resume=latest to continue") from interrupt
    finally:
        logger.close()

    # 8. Save the actor (a plain causal LM folder) and the critic; report before / after.
    summary = {"stage": "ppo", "steps": step,
               "eval_before": before, "eval_after": after, "kl_beta": kl_ctl.value,
               "sampler_scorer_gap": gap,
               # config.yaml keeps `from_stage`; these are the folders it resolved to.
               "models": {"policy": _where(policy_path), "reward_model": _where(rm_path)}}
    if rt.is_main:
        unwrap(actor_l.model).save_pretrained(out_dir / "model")
        tokenizer.padding_side = "right"
        tokenizer.save_pretrained(out_dir / "model")
        unwrap(critic_l.model).save_pretrained(out_dir / "critic")
        write_summary(out_dir, summary)
        rt.print(_before_after_table(before, after))
    rt.accelerator.wait_for_everyone()
    return summary


def _save_samples(
    path: Path, step: int, prompts: list[str], texts: list[str], scores: torch.Tensor,
    records: list[dict[str, Any]], count: int = 4,
) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        for prompt, text, score, record in list(zip(prompts, texts, scores.tolist(), records,
                                                    strict=True))[:count]:
            row = {"step": step, "prompt": prompt, "response": text, "score": score}
            row.update(gold_figures([text], [record]))
            handle.write(json.dumps(row) + "\n")


def _where(model: Path | str) -> str:
    """A local model folder as an absolute path; a hub name as it is."""
    return str(model.resolve()) if isinstance(model, Path) else model


def _before_after_table(before: dict[str, float], after: dict[str, float]) -> Table:
    table = Table(title="ppo: held-out prompts, greedy answers (sampled_*: at the rollout "
                        "temperature)")
    for column in ("metric", "before", "after", "change"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key in after:
        old, new = before.get(key), after[key]
        change = "" if old is None else f"{new - old:+.3f}"
        table.add_row(key, "" if old is None else f"{old:.3f}", f"{new:.3f}", change)
    return table
