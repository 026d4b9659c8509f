"""`icegrt plan STAGE [overrides]`: the memory one device needs to run a stage, per model.

The stage's config is composed exactly as the stage composes it (same groups, shortcuts,
checks and one-line errors), models are resolved as the stage resolves them, and each model's
memory is split into parameters, gradients, optimizer state and working memory (activations,
logits, KV cache, gathered shards). Models run one after another, so the peak is the state
every model keeps plus the largest single pass: generation, a scoring pass, or one model's
update with its gradients.

Frozen models (reference, reward model) are placed as the PPO stage places them: whole on
every device whatever the engine (only trained models are wrapped by it). A setting the engine
refuses (`engine.check_engine_settings`) is refused here in the same words.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from icegrt_cli.config import separate_critic
from icegrt_cli.errors import ConfigError
from icegrt_cli.launch import conf_dir, flags_first, name_groups, register_resolvers, validate
from icegrt_cli.models import context_length
from icegrt_cli.planning.memory import (
    FP32,
    SHARDS_STATES,
    Bytes,
    Shape,
    activation_bytes,
    dtype_bytes,
    gathered_bytes,
    generation_bytes,
    lm_loss_logit_bytes,
    optimizer_bytes_per_param,
    place,
    policy_logit_bytes,
    scoring_bytes,
    train_body_bytes,
)
from icegrt_cli.planning.shapes import architecture, model_shape
from icegrt_cli.stages.common import resolve_model
from icegrt_cli.stages.registry import STAGES, register_configs

PLANNED = {"sft": "sft", "train-rm": "train_rm", "ppo": "ppo"}
"""Verbs the planner takes, and their stage configs."""


@dataclass(frozen=True)
class RolePlan:
    """One model's memory per device (and in CPU memory, when offloaded)."""

    role: str
    trains: str
    device: Bytes
    cpu: int = 0
    note: str = ""
    phases: dict[str, int] = field(default_factory=dict)
    """Working memory of each pass this model runs; `update` also holds its gradients."""


@dataclass(frozen=True)
class Plan:
    stage: str
    engine: str
    devices: int
    offload: bool
    roles: list[RolePlan]
    peak: Bytes
    """Per device at the largest pass: every model's kept state plus that pass."""
    peak_pass: str
    workload: str
    device_memory: int | None

    @property
    def cpu(self) -> int:
        """CPU memory of one process (offloaded state)."""
        return sum(role.cpu for role in self.roles)

    @property
    def fits(self) -> bool | None:
        return None if self.device_memory is None else self.peak.total <= self.device_memory

    def as_dict(self) -> dict:
        return {
            "stage": self.stage,
            "engine": self.engine,
            "devices": self.devices,
            "offload": self.offload,
            "roles": [
                {**asdict(r), "device": {**asdict(r.device), "total": r.device.total}}
                for r in self.roles
            ],
            "peak": {**asdict(self.peak), "total": self.peak.total, "pass": self.peak_pass},
            "cpu_per_process": self.cpu,
            "workload": self.workload,
            "device_memory": self.device_memory,
            "fits": self.fits,
        }


def compose_stage(verb: str, args: list[str]) -> DictConfig:
    """The config `icegrt VERB args` would run with, checked as that command checks it."""
    if verb not in PLANNED:
        raise ConfigError(f"plan: no stage '{verb}' to plan (choose one of {', '.join(PLANNED)})")
    stage = PLANNED[verb]
    register_configs()
    register_resolvers()
    args = flags_first(name_groups(stage, args))
    if flags := [a for a in args if a.startswith("-")]:
        raise ConfigError(f"plan: {flags[0]} is not a plan option (see icegrt plan --help)")
    if any(o.is_sweep_override() for o in OverridesParser.create().parse_overrides(args)):
        raise ConfigError("plan: one configuration at a time; give one value per key, not a sweep")
    validate(stage, stage, args)
    with initialize_config_dir(str(conf_dir()), version_base="1.3", job_name=stage):
        cfg = compose(config_name=stage, overrides=args)
    check = getattr(importlib.import_module(STAGES[stage].module), "check", None)
    if check is not None:
        check(cfg)
    return cfg


def plan_stage(
    verb: str,
    args: list[str],
    devices: int = 1,
    device_memory: int | None = None,
    prompt_length: int | None = None,
) -> Plan:
    """Compose `icegrt VERB args` and plan its memory over `devices` devices."""
    if devices < 1:
        raise ConfigError(f"plan: --devices must be at least 1, got {devices}")
    cfg = compose_stage(verb, args)
    run_root = Path(cfg.run.root) / cfg.run.name if cfg.run.name else None
    planner = {"sft": _plan_sft, "train_rm": _plan_train_rm, "ppo": _plan_ppo}[cfg.stage]
    roles, workload = planner(cfg, run_root, devices, prompt_length)
    peak, peak_pass = _peak(roles, cfg.engine.kind)
    return Plan(
        verb,
        cfg.engine.kind,
        devices,
        cfg.engine.offload,
        roles,
        peak,
        peak_pass,
        workload,
        device_memory,
    )


@dataclass(frozen=True)
class _Model:
    """A model as a stage holds it: its shape and its bytes per element."""

    shape: Shape
    weight_bytes: int
    act_bytes: int
    lora: bool
    checkpointing: bool
    eager: bool


def _model(
    model_cfg: DictConfig, key: str, cfg: DictConfig, scalar: bool, peft: DictConfig
) -> _Model:
    config = architecture(model_cfg, key)
    weight = dtype_bytes(model_cfg.dtype)
    return _Model(
        model_shape(config, peft, scalar),
        weight,
        activation_bytes(weight, cfg.run.precision),
        peft.kind == "lora",
        bool(model_cfg.gradient_checkpointing),
        model_cfg.attn_implementation == "eager",
    )


NO_PEFT = OmegaConf.structured({"kind": "none"})


def _role(
    name: str,
    model: _Model,
    cfg: DictConfig,
    devices: int,
    phases: dict[str, int],
    trainable: bool,
) -> RolePlan:
    """Place one model's state and working memory under the stage's engine."""
    shape, engine = model.shape, cfg.engine.kind
    frozen = shape.parameters - (shape.trainable if (trainable and model.lora) else 0)
    adapters = shape.trainable if (trainable and model.lora) else 0
    params = frozen * model.weight_bytes + adapters * FP32  # PEFT keeps adapters in fp32
    grads = optimizer = 0
    if trainable:
        state = FP32 if model.lora else model.weight_bytes
        grads = shape.trainable * state
        optimizer = shape.trainable * optimizer_bytes_per_param(state, engine)
    if not trainable:
        engine = "ddp"  # frozen models are not wrapped by the engine: whole on every device
    placed = place(params, grads, optimizer, engine, devices, cfg.engine.offload)
    gathered = gathered_bytes(shape.largest_block * model.weight_bytes, engine)
    working = {phase: size + gathered for phase, size in phases.items()}
    device = Bytes(
        placed.device.params, placed.device.grads, placed.device.optimizer, max(working.values())
    )
    if trainable:
        what = "LoRA" if model.lora else "all"
        trains = f"{what} {_count(shape.trainable)} / {_count(shape.parameters)}"
    else:
        trains = f"frozen {_count(shape.parameters)}"
    return RolePlan(name, trains, device, placed.cpu, "", working)


def _shared(name: str, trains: str, note: str) -> RolePlan:
    return RolePlan(name, trains, Bytes(), 0, note, {})


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n:,}"


def _plan_sft(
    cfg: DictConfig, run_root: Path | None, devices: int, _prompt_length: int | None
) -> tuple[list[RolePlan], str]:
    model = _model(resolve_model(cfg.model, run_root, "model"), "model", cfg, False, cfg.peft)
    rows, seq = cfg.train.batch_size, cfg.data.max_length
    working = train_body_bytes(
        model.shape, rows, seq, model.act_bytes, model.checkpointing, model.eager
    ) + lm_loss_logit_bytes(model.shape, rows, seq, model.act_bytes)
    role = _role("model", model, cfg, devices, {"model update": working}, trainable=True)
    return [role], f"micro-batch {rows} rows x {seq} tokens (data.max_length) per device"


def _plan_train_rm(
    cfg: DictConfig, run_root: Path | None, devices: int, _prompt_length: int | None
) -> tuple[list[RolePlan], str]:
    model_cfg = resolve_model(cfg.reward_model, run_root, "reward_model")
    model = _model(model_cfg, "reward_model", cfg, True, cfg.peft)
    rows, seq = 2 * cfg.train.batch_size, cfg.data.max_length
    working = train_body_bytes(
        model.shape, rows, seq, model.act_bytes, model.checkpointing, model.eager
    )
    role = _role("reward model", model, cfg, devices, {"reward model update": working}, True)
    return [role], (
        f"micro-batch {cfg.train.batch_size} pairs = {rows} rows x {seq} tokens "
        "(data.max_length) per device"
    )


def _plan_ppo(
    cfg: DictConfig, run_root: Path | None, devices: int, prompt_length: int | None
) -> tuple[list[RolePlan], str]:
    policy_cfg = resolve_model(cfg.policy, run_root, "policy")
    rm_cfg = resolve_model(cfg.reward_model, run_root, "reward_model")
    lora = cfg.peft.kind == "lora"
    has_critic = separate_critic(cfg)
    critic_from_rm = cfg.ppo.critic_init == "reward_model"
    actor = _model(policy_cfg, "policy", cfg, False, cfg.peft)
    rm = _model(rm_cfg, "reward_model", cfg, True, NO_PEFT)

    response = cfg.rollout.max_new_tokens
    limit = (
        min(
            context_length(architecture(policy_cfg, "policy")),
            context_length(architecture(rm_cfg, "reward_model")),
        )
        - response
    )
    if limit < 1:
        raise ConfigError(
            f"rollout.max_new_tokens ({response}) leaves no room for a prompt in the models' "
            f"context of {limit + response} tokens"
        )
    if prompt_length is not None and not 0 < prompt_length <= limit:
        raise ConfigError(
            f"--prompt-length {prompt_length}: a prompt has 1 to {limit} tokens here (context "
            f"{limit + response} - rollout.max_new_tokens {response})"
        )
    prompt = limit if prompt_length is None else prompt_length
    seq = prompt + response
    rows = cfg.rollout.batch_size * cfg.rollout.n
    chunk = min(cfg.rollout.forward_batch_size, rows)
    minibatch = min(cfg.ppo.minibatch_size, rows)

    def scores(model: _Model, logits: bool) -> int:
        return scoring_bytes(
            model.shape, chunk, seq, response, model.act_bytes, model.eager, logits
        )

    def trains(model: _Model, rows_: int, seq_: int) -> int:
        return train_body_bytes(
            model.shape, rows_, seq_, model.act_bytes, model.checkpointing, model.eager
        )

    s, ab = actor.shape, actor.act_bytes
    actor_update = trains(actor, minibatch, seq) + policy_logit_bytes(
        s, minibatch, seq, response, ab
    )
    ptx = ""
    if cfg.ppo.ptx_coef > 0:  # the PPO-ptx batch's graph is alive with the PPO minibatch's
        ptx_rows, ptx_seq = cfg.ppo.ptx_batch_size, cfg.ptx_data.max_length
        actor_update += trains(actor, ptx_rows, ptx_seq) + lm_loss_logit_bytes(
            s, ptx_rows, ptx_seq, ab
        )
        ptx = f"; PPO-ptx {ptx_rows} rows x {ptx_seq} tokens"
    roles = [
        _role(
            "actor",
            actor,
            cfg,
            devices,
            {
                "generation": generation_bytes(s, rows, prompt, seq, ab),
                "actor scoring": scores(actor, True),
                "actor update": actor_update,
            },
            trainable=True,
        )
    ]
    if lora:
        roles.append(_shared("reference", "shared", "the actor with its adapters off: no copy"))
    else:
        reference = _model(policy_cfg, "policy", cfg, False, NO_PEFT)
        roles.append(
            _role(
                "reference",
                reference,
                cfg,
                devices,
                {"reference scoring": scores(reference, True)},
                False,
            )
        )
    if has_critic:
        critic_cfg = rm_cfg if critic_from_rm else policy_cfg
        key = "reward_model" if critic_from_rm else "policy"
        critic = _model(critic_cfg, key, cfg, True, cfg.peft)
        phases = {
            "critic scoring": scores(critic, False),
            "critic update": trains(critic, minibatch, seq),
        }
    if has_critic and critic_from_rm and lora and cfg.peft.share_base:
        roles.append(_shared("reward model", "frozen", "the critic with its adapters off: no copy"))
    else:
        roles.append(
            _role("reward model", rm, cfg, devices, {"reward scoring": scores(rm, False)}, False)
        )
    if has_critic:
        roles.append(_role("critic", critic, cfg, devices, phases, trainable=True))
    else:
        roles.append(
            _shared("critic", "none", f"advantage={cfg.advantage.estimator} needs no critic")
        )
    workload = (
        f"rollout {rows} rows x (prompt {prompt} + response {response}) tokens per device; "
        f"scoring {chunk} rows a pass; update minibatch {minibatch} rows{ptx}"
    )
    return roles, workload


def _peak(roles: list[RolePlan], engine: str) -> tuple[Bytes, str]:
    """Every model's parameters and optimizer state (and, under DeepSpeed, its gradient
    partitions, which stay allocated), plus the largest pass: its working memory and, for an
    update, that model's gradients (torch frees them after each step)."""
    persistent_grads = engine in SHARDS_STATES and engine != "fsdp"
    params = sum(r.device.params for r in roles)
    optimizer = sum(r.device.optimizer for r in roles)
    kept_grads = sum(r.device.grads for r in roles) if persistent_grads else 0
    best = (Bytes(params, kept_grads, optimizer), "")
    for role in roles:
        for name, working in role.phases.items():
            grads = kept_grads or (role.device.grads if name.endswith("update") else 0)
            candidate = Bytes(params, grads, optimizer, working)
            if candidate.total > best[0].total:
                best = (candidate, name)
    return best
