"""LoRA through PEFT: the reference is the actor with adapters off (no copy), merges are exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from icegrt_cli.adapters import (
    FrozenModel,
    merge_adapter,
    merged,
    trainable_parameters,
    transformers_model,
    with_adapters,
)
from icegrt_cli.config import PeftConfig
from icegrt_cli.engine.metrics import read_metrics
from icegrt_cli.errors import ConfigError
from tests.cli_helpers import TINY_SFT, icegrt

LORA = PeftConfig(kind="lora", r=4, alpha=8.0)


def _tiny_llama(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    return AutoModelForCausalLM.from_config(config)


def _train_adapters(model: torch.nn.Module, ids: torch.Tensor, steps: int = 3) -> None:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def test_adapters_off_is_the_base_model_after_training_and_holds_no_copy() -> None:
    base = _tiny_llama()
    ids = torch.randint(0, 64, (2, 12))
    before = {name: p.detach().clone() for name, p in base.named_parameters()}
    with torch.no_grad():
        base_logits = base(input_ids=ids).logits
    actor = with_adapters(base, LORA)
    trainable, total = trainable_parameters(actor)
    assert 0 < trainable < total / 5
    _train_adapters(actor, ids)

    reference = FrozenModel(actor, adapters_off=True)
    with torch.no_grad(), reference.use() as ref:
        ref_logits = ref(input_ids=ids).logits
    with torch.no_grad():
        actor_logits = actor(input_ids=ids).logits
    assert ref is actor  # the same module, seen with adapters off: no second copy
    assert torch.equal(ref_logits, base_logits)
    assert not torch.allclose(actor_logits, base_logits, atol=1e-4)  # the adapters learned
    base_now = {
        name.replace(".base_layer", ""): p
        for name, p in transformers_model(actor).named_parameters()
        if "lora_" not in name
    }
    assert base_now.keys() == before.keys()
    assert all(torch.equal(base_now[name], value) for name, value in before.items())


def test_merged_export_loads_with_plain_transformers_and_matches(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    actor = with_adapters(AutoModelForCausalLM.from_pretrained(tiny_model_dir), LORA)
    ids = torch.randint(0, 500, (2, 12))
    _train_adapters(actor, ids)
    with torch.no_grad():
        adapted = actor(input_ids=ids).logits

    plain = merged(actor, tmp_path / "stage" / "adapter")
    settings = json.loads((tmp_path / "stage" / "adapter" / "adapter_config.json").read_text())
    assert Path(settings["base_model_name_or_path"]).is_absolute()
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=ids).logits, adapted, atol=1e-5)

    # `icegrt export --merge` rebuilds the same weights from base + adapter alone.
    merge_adapter(tmp_path / "stage", tmp_path / "merged")
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert (tmp_path / "merged" / "tokenizer.json").exists()
    with torch.no_grad():
        assert torch.allclose(exported(input_ids=ids).logits, adapted, atol=1e-5)


def test_export_names_a_folder_without_an_adapter(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no LoRA adapter here"):
        merge_adapter(tmp_path, tmp_path / "out")


def test_unknown_target_module_is_one_config_error() -> None:
    bad = PeftConfig(kind="lora", target_modules=["no_such_proj"])
    with pytest.raises(ConfigError, match="peft.target_modules"):
        with_adapters(_tiny_llama(), bad)


TINY_RM = [
    "data.sources.0.limit=96",
    "train.max_steps=4",
    "train.batch_size=8",
    "train.eval_every=0",
    "train.save_every=0",
    "run.progress=false",
    "calibration_size=16",
]
TINY_PPO = [
    "ppo.steps=3",
    "rollout.batch_size=8",
    "rollout.max_new_tokens=12",
    "ppo.minibatch_size=4",
    "train.eval_size=8",
    "train.eval_every=0",
    "train.save_every=0",
    "run.log_every=1",
    "run.progress=false",
    "data.sources.0.limit=64",
    "ppo.ptx_coef=0",
]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run whose SFT and reward model were trained with LoRA through the CLI."""
    cwd = tmp_path_factory.mktemp("lora")
    icegrt("sft", "run.name=lora", "peft=lora", *TINY_SFT, cwd=cwd)
    icegrt("train-rm", "run.name=lora", "peft=lora", *TINY_RM, cwd=cwd)
    return cwd


@pytest.mark.slow
def test_lora_pipeline_sft_rm_ppo_and_export(lora_run: Path) -> None:
    """SFT, reward model and PPO with LoRA through the CLI: each saves a merged plain model
    and its adapter; PPO's reference starts equal to the actor (KL 0 at the first step);
    `icegrt export --merge` rebuilds the PPO model from its adapter."""
    tmp_path = lora_run
    proc = icegrt("ppo", "run.name=lora", "peft=lora", *TINY_PPO, cwd=tmp_path)
    said = " ".join(proc.stdout.split())
    assert "reference and reward model by turning adapters off (no copy)" in said
    runs = tmp_path / "runs" / "lora"
    for stage in ("sft", "train_rm", "ppo"):
        summary = json.loads((runs / stage / "summary.json").read_text())
        assert summary["peft"] == "lora"
        assert (runs / stage / "adapter" / "adapter_config.json").exists()
        assert (runs / stage / "model" / "model.safetensors").exists()
    first = [r for r in read_metrics(runs / "ppo" / "metrics.jsonl") if "kl/ref" in r][0]
    assert abs(first["kl/ref"]) < 1e-6  # adapters start at zero: the actor is the reference

    icegrt("export", str(runs / "ppo"), "--out", str(tmp_path / "merged"), cwd=tmp_path)
    ids = torch.tensor([[5, 9, 13, 21, 34, 55]])
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    saved = AutoModelForCausalLM.from_pretrained(runs / "ppo" / "model")
    with torch.no_grad():
        assert torch.allclose(
            exported(input_ids=ids).logits, saved(input_ids=ids).logits, atol=1e-5
        )


@pytest.mark.slow
def test_bf16_reference_and_reward_passes_share_the_actors_autocast(lora_run: Path) -> None:
    """At lr 0 under bf16 autocast the actor and its separate reference copy score alike: KL 0
    and ratio 1 (before, the frozen models ran outside autocast: KL 7e-4 at step 1)."""
    runs = lora_run / "runs" / "lora"
    icegrt(
        "ppo",
        "run.name=bf16",
        "run.precision=bf16",
        "model@policy=hf",
        f"policy.name_or_path={runs / 'sft' / 'model'}",
        "policy.dtype=float32",
        "model@reward_model=hf",
        f"reward_model.name_or_path={runs / 'train_rm' / 'model'}",
        "reward_model.dtype=float32",
        "ppo.lr=0",
        "ppo.critic_lr=0",
        *TINY_PPO,
        cwd=lora_run,
    )
    steps = [r for r in read_metrics(lora_run / "runs/bf16/ppo/metrics.jsonl") if "kl/ref" in r]
    assert [r["kl/ref"] for r in steps] == [0.0] * len(steps)
    # A minibatch is trimmed to its own rows, so the update reads fewer columns than the
    # scoring pass did: the same numbers up to bf16 accumulation order (seen: 2.5e-6).
    assert all(r["ppo/ratio"] == pytest.approx(1.0, abs=1e-5) for r in steps)
