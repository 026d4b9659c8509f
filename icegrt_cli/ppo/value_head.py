"""The actor with a value head on its own last hidden states (`ppo.shared_backbone`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from icegrt_cli.adapters import transformers_model
from icegrt_cli.atomic import writing_file

VALUE_HEAD_FILE = "value_head.safetensors"


class PolicyWithValueHead(nn.Module):
    """A causal LM whose forward also returns `values`: a linear head on the hidden states the
    LM head reads (after the final norm, at the positions `logits_to_keep` keeps), so one
    forward gives a token's log-prob and its value. The head starts at zero: values 0 until
    the value loss has moved it, where a random head would add noise to the first advantages."""

    wraps_policy = True
    """Marks the wrapper for `adapters.transformers_model`, which looks through it."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy
        lm = transformers_model(policy)
        weight = lm.get_output_embeddings().weight
        self.value_head = nn.Linear(lm.config.hidden_size, 1, dtype=weight.dtype)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, **inputs: Any) -> Any:
        captured: list[torch.Tensor] = []
        head = transformers_model(self.policy).get_output_embeddings()
        hook = head.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
        try:
            out = self.policy(**inputs)
        finally:
            hook.remove()
        out["values"] = self.value_head(captured[-1]).squeeze(-1).float()
        return out


def save_value_head(model: nn.Module, path: Path) -> None:
    """The head's weights (safetensors), written whole: it reads `path`'s sibling model/."""
    head = getattr(model, "module", model).value_head
    weights = {name: p.detach().cpu().contiguous() for name, p in head.state_dict().items()}
    with writing_file(path) as tmp:
        save_file(weights, str(tmp))
