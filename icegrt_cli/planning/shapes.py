"""A model's shape and exact parameter counts, without its weights.

The architecture comes from where a stage would load it: a size preset's config (built exactly
as `icegrt_cli.models` builds it), a checkpoint folder's config.json, for the hub ids the
shipped presets name the table below (no network), and for another hub id its config.json
from the cache or the hub. The model is then built on the `meta`
device, where tensors have shapes and no storage, so counts are exact for any architecture
and LoRA adapters are counted by adding them the way a stage does.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from omegaconf import DictConfig
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    LlamaConfig,
    PretrainedConfig,
)

from icegrt_cli.adapters import with_adapters
from icegrt_cli.config import PeftConfig
from icegrt_cli.errors import ConfigError
from icegrt_cli.models import build_preset_config, check_model_folder, check_model_path
from icegrt_cli.planning.memory import Shape

LLAMA2 = {
    "7b": {
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "intermediate_size": 11008,
    },
    "13b": {
        "hidden_size": 5120,
        "num_hidden_layers": 40,
        "num_attention_heads": 40,
        "num_key_value_heads": 40,
        "intermediate_size": 13824,
    },
}
KNOWN_HUB_MODELS: dict[str, dict[str, int | bool]] = {
    f"{hub_id}": {
        **LLAMA2[size],
        "vocab_size": 32000,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": False,
    }
    for size, ids in (
        (
            "7b",
            ("lmsys/vicuna-7b-v1.5", "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-7b-chat-hf"),
        ),
        (
            "13b",
            (
                "lmsys/vicuna-13b-v1.5",
                "meta-llama/Llama-2-13b-hf",
                "meta-llama/Llama-2-13b-chat-hf",
            ),
        ),
    )
    for hub_id in ids
}
"""Llama-2 7B / 13B shapes (Touvron et al. 2023, table 1 and the released config.json files),
for the hub ids of `model=7b|13b` and the base models they were tuned from."""


def architecture(cfg: DictConfig, key: str) -> PretrainedConfig:
    """The transformers config a stage would build or load for model settings `cfg` (with
    `from_stage` already resolved to a folder), the vocabulary grown as the tokenizer needs."""
    from icegrt_cli.models import load_tokenizer

    source = cfg.name_or_path
    if source is None:
        return build_preset_config(cfg, load_tokenizer(cfg))
    if source in KNOWN_HUB_MODELS and not Path(source).exists():
        return LlamaConfig(**KNOWN_HUB_MODELS[source])
    folder = Path(source).expanduser()
    if folder.is_dir():
        check_model_folder(folder, f"{key}.name_or_path")
        config = AutoConfig.from_pretrained(folder, trust_remote_code=cfg.trust_remote_code)
        # A pad token added on load grows the embeddings by a row (`icegrt_cli.models`).
        config.vocab_size = max(config.vocab_size, len(load_tokenizer(cfg)))
        return config
    # A missing folder is named as the stage names it; a hub id must be cached or reachable.
    check_model_path(source, f"{key}.name_or_path")
    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError):
        known = ", ".join(sorted(KNOWN_HUB_MODELS))
        raise ConfigError(
            f"{key}.name_or_path: no config.json could be read for '{source}' (the planner "
            f"knows {known} without one); give a folder with its config.json"
        ) from None


def model_shape(config: PretrainedConfig, peft: PeftConfig, scalar: bool) -> Shape:
    """Shape and parameter counts of a causal LM (`scalar` False) or a scalar-head model (the
    reward model and the critic), with LoRA adapters when `peft.kind` is lora."""
    config = config.__class__.from_dict(config.to_dict())
    if scalar:
        config.num_labels = 1
    loader = AutoModelForSequenceClassification if scalar else AutoModelForCausalLM
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notes from transformers / peft
        model = loader.from_config(config)
        blocks = [*_decoder_layers(model), model.get_input_embeddings()]
        if not scalar and not config.tie_word_embeddings:
            blocks.append(model.get_output_embeddings())
        largest = max(sum(p.numel() for p in block.parameters()) for block in blocks)
        model = with_adapters(model, peft, scalar=scalar)
    params = list(model.parameters())
    heads = config.num_attention_heads
    hidden = config.hidden_size
    return Shape(
        layers=config.num_hidden_layers,
        hidden=hidden,
        heads=heads,
        kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        head_dim=getattr(config, "head_dim", None) or hidden // heads,
        intermediate=config.intermediate_size,
        vocab=config.vocab_size,
        parameters=sum(p.numel() for p in params),
        trainable=sum(p.numel() for p in params if p.requires_grad),
        largest_block=largest,
    )


def _decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks: the largest ModuleList of the model (`model.layers` in Llama)."""
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    return list(max(lists, key=len)) if lists else []
