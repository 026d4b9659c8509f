"""The memory planner: exact parameter counts, the arithmetic of state and sharding against
hand-worked numbers, the plan of a stage composed as the stage composes it, and the verb."""

from __future__ import annotations

import json

import pytest
import torch
from rich.text import Text
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, LlamaConfig

from icegrt_cli.adapters import with_adapters
from icegrt_cli.config import PeftConfig
from icegrt_cli.errors import ConfigError
from icegrt_cli.planning.memory import (
    GIB,
    Bytes,
    Shape,
    human,
    kv_cache_bytes,
    optimizer_bytes_per_param,
    parse_size,
    place,
    train_body_bytes,
)
from icegrt_cli.planning.plan import plan_stage
from icegrt_cli.planning.render import plan_notes
from icegrt_cli.planning.shapes import model_shape
from tests.cli_helpers import icegrt

# Grouped-query attention (2 kv heads of 4), untied head: every count below is by hand.
SMALL = LlamaConfig(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    vocab_size=100,
    tie_word_embeddings=False,
)
LLAMA2_7B = 6_738_415_616
"""Llama-2-7B's published parameter count (its safetensors index: 13,476,831,232 bytes in
bf16)."""


def _numel(model: torch.nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


def test_counts_are_exact_for_causal_and_scalar_models_with_and_without_lora() -> None:
    torch.manual_seed(0)
    lora = PeftConfig(kind="lora")
    causal = model_shape(SMALL, PeftConfig(), scalar=False)
    assert causal.parameters == _numel(AutoModelForCausalLM.from_config(SMALL))
    # embeddings + head 2 x 100 x 64; per layer q, o 64x64, k, v 32x64, MLP 3 x 64x128, 2 norms
    per_layer = 2 * 64 * 64 + 2 * 32 * 64 + 3 * 64 * 128 + 2 * 64
    assert causal.parameters == 2 * 100 * 64 + 2 * per_layer + 64
    assert causal.largest_block == per_layer  # a layer (36,992) outweighs the embedding (6,400)

    adapted = model_shape(SMALL, lora, scalar=False)
    # rank 16 x (in + out) on q, k, v, o, gate, up, down, in each of the 2 layers
    adapters = 2 * 16 * ((64 + 64) + 2 * (64 + 32) + (64 + 64) + 2 * (64 + 128) + (128 + 64))
    assert adapted.trainable == adapters == 32_768
    assert adapted.parameters == causal.parameters + adapters

    scalar = model_shape(SMALL, lora, scalar=True)
    config = LlamaConfig(**{**SMALL.to_dict(), "num_labels": 1})
    real = with_adapters(AutoModelForSequenceClassification.from_config(config), lora, scalar=True)
    assert (scalar.parameters, scalar.trainable) == (_numel(real), _numel(real, trainable=True))


def test_a_checkpoint_folder_is_counted_as_the_stage_loads_it(tiny_model_dir, tiny_lm) -> None:
    model, _ = tiny_lm
    args = ["model=hf", f"model.name_or_path={tiny_model_dir}", "model.dtype=float32"]
    (role,) = plan_stage("sft", args).roles
    assert role.trains == f"all {_numel(model):,} / {_numel(model):,}"
    assert role.device.params == role.device.grads == 4 * _numel(model)


def test_adamw_state_per_parameter() -> None:
    assert optimizer_bytes_per_param(4, "ddp") == 8  # two fp32 moments
    assert optimizer_bytes_per_param(2, "ddp") == 4  # torch keeps them in the weights' bf16
    assert optimizer_bytes_per_param(2, "zero3") == 12  # fp32 master + two fp32 moments
    assert optimizer_bytes_per_param(4, "zero2") == 8


def test_engines_shard_and_offload_as_they_promise() -> None:
    params, grads, optimizer = 400, 400, 1600
    assert place(params, grads, optimizer, "ddp", 4, False).device == Bytes(400, 400, 1600)
    assert place(params, grads, optimizer, "zero2", 4, False).device == Bytes(400, 100, 400)
    assert place(params, grads, optimizer, "zero3", 4, False).device == Bytes(100, 100, 400)
    assert place(params, grads, optimizer, "fsdp", 4, False).device == Bytes(100, 100, 400)
    zero2 = place(params, grads, optimizer, "zero2", 4, True)
    assert (zero2.device, zero2.cpu) == (Bytes(400, 100, 0), 400)
    zero3 = place(params, grads, optimizer, "zero3", 4, True)
    assert (zero3.device, zero3.cpu) == (Bytes(0, 100, 0), 500)


def test_activation_and_kv_cache_arithmetic() -> None:
    shape = Shape(
        layers=3,
        hidden=8,
        heads=2,
        kv_heads=1,
        head_dim=4,
        intermediate=16,
        vocab=50,
        parameters=0,
        trainable=0,
        largest_block=0,
    )
    # 2 rows x 10 tokens x 3 layers x 2 (k, v) x 1 kv head x 4 dims x 2 bytes
    assert kv_cache_bytes(shape, rows=2, length=10, act_bytes=2) == 960
    # per layer: 6h + 2 q_dim + 2 kv_dim + 2 q_dim (k, v repeated) + 4 I = 48+16+8+16+64 = 152
    # elements, x 3 layers + the final norm's 3h = 480 per token; 2 x 10 tokens x 4 bytes
    assert train_body_bytes(shape, 2, 10, 4, checkpointing=False, eager=False) == 480 * 80
    # checkpointing keeps 3 layer inputs (8 each) and recomputes one layer: 24 + 152 + 24
    assert train_body_bytes(shape, 2, 10, 4, checkpointing=True, eager=False) == 200 * 80
    # eager attention adds heads x S softmax entries per token in each layer: 3 x 2 x 10
    eager = train_body_bytes(shape, 2, 10, 4, checkpointing=False, eager=True)
    assert eager == (480 + 60) * 80


def test_sizes_parse_with_units() -> None:
    assert parse_size("80GiB") == 80 * GIB
    assert parse_size("40GB") == 40 * 10**9
    assert parse_size("512MiB") == 512 * 2**20
    assert parse_size("1.5") == int(1.5 * GIB)
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")


def test_ppo_plan_of_the_7b_preset_shards_the_trained_models_under_fsdp() -> None:
    args = ["model@policy=7b", "model@reward_model=7b", "engine=fsdp", "run.precision=bf16"]
    ddp = plan_stage("ppo", [*args, "engine=ddp"], devices=8, device_memory=80 * GIB)
    fsdp = plan_stage("ppo", args, devices=8, device_memory=80 * GIB)
    actor, reference, reward, critic = (r.device for r in fsdp.roles)
    # bf16 weights: 2 bytes a parameter, an eighth of them on each of the 8 devices
    assert ddp.roles[0].device.params == LLAMA2_7B * 2
    assert actor.params == LLAMA2_7B * 2 // 8
    # the frozen models are not wrapped by the engine: whole on every device, as the stage does
    assert reference.params == LLAMA2_7B * 2
    # torch's AdamW: two moments in the weights' dtype, sharded with them
    assert actor.optimizer == LLAMA2_7B * 4 // 8
    assert reward.grads == reward.optimizer == 0
    assert critic.params == reward.params // 8  # the critic starts from the reward model
    assert not ddp.fits and fsdp.peak.total < ddp.peak.total


def test_plan_refuses_deepspeed_for_two_trained_models_but_not_for_one() -> None:
    args = ["model@policy=7b", "model@reward_model=7b", "engine=zero3", "run.precision=bf16"]
    with pytest.raises(ConfigError, match="engine.kind=zero3: this stage trains 2 models"):
        plan_stage("ppo", args, devices=8)
    grpo = plan_stage("ppo", [*args, "advantage=grpo", "rollout.n=4"], devices=8)
    assert grpo.roles[0].device.optimizer == LLAMA2_7B * 12 // 8  # fp32 master + moments


def test_lora_shares_the_reference_and_critic_free_estimators_drop_the_critic() -> None:
    plan = plan_stage(
        "ppo",
        ["model@policy=7b", "model@reward_model=7b", "peft=lora", "advantage=grpo", "rollout.n=4"],
    )
    roles = {role.role: role for role in plan.roles}
    assert roles["reference"].device.total == 0  # the actor with its adapters off
    assert roles["critic"].device.total == 0 and "needs no critic" in roles["critic"].note
    assert roles["reward model"].device.params == (LLAMA2_7B - 32000 * 4096 + 4096) * 2
    # 16 x (in + out) on 7 projections of 32 layers: 4 of 4096->4096 and 3 of 4096<->11008
    assert roles["actor"].device.optimizer == 32 * 16 * (4 * 8192 + 3 * 15104) * 8


def test_verdict_names_what_the_peak_needs() -> None:
    args = ["model@policy=7b", "model@reward_model=7b", "peft=lora"]
    small = plan_stage("ppo", args, device_memory=GIB)
    verdict = Text.from_markup(plan_notes(small)[-1]).plain
    assert verdict == f"does not fit in 1.00 GiB: needs {human(small.peak.total)} per device"
    large = plan_stage("ppo", args, device_memory=1024 * GIB)
    assert Text.from_markup(plan_notes(large)[-1]).plain.startswith("fits in 1,024.00 GiB")


def test_plan_refuses_what_the_stage_refuses() -> None:
    with pytest.raises(ConfigError, match="ppo.lrr"):
        plan_stage("ppo", ["model@policy=7b", "model@reward_model=7b", "ppo.lrr=1"])
    with pytest.raises(ConfigError, match="policy.from_stage=sft"):
        plan_stage("ppo", [])  # this run's SFT model, with no run to find it in
    with pytest.raises(ConfigError, match="one configuration"):
        plan_stage("sft", ["optim.lr=1e-3,1e-4"])


@pytest.mark.slow
def test_plan_verb_prints_json_and_a_verdict(tmp_path) -> None:
    args = ["plan", "ppo", "model@policy=7b", "model@reward_model=7b", "engine=fsdp"]
    out = icegrt(*args, "--devices", "8", "--device-memory", "80GiB", "--json", cwd=tmp_path)
    plan = json.loads(out.stdout)
    assert plan["roles"][0]["device"]["params"] == LLAMA2_7B * 2 // 8
    assert plan["fits"] == (plan["peak"]["total"] <= 80 * GIB)
    bad = icegrt("plan", "ppo", "--device-memory", "lots", cwd=tmp_path, check=False)
    assert bad.returncode != 0 and "--device-memory" in bad.stderr + bad.stdout
