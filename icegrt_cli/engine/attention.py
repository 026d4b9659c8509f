"""Which scaled-dot-product attention kernel a training pass uses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

SHORT_ON_CPU = 128
"""Tokens per row up to which the math kernel trains faster than the flash kernel on a CPU
under bf16 autocast."""


@contextmanager
def training_attention(device: torch.device, width: int) -> Iterator[None]:
    """The kernel for the passes of a training step over rows of up to `width` tokens. A PPO
    step samples, scores and updates under one kernel, so the update re-scores what the
    scoring pass scored up to rounding, as the ratio needs.

    On a CPU under bf16 autocast, the flash kernel's backward pass over short rows costs about
    three times the plain (math) kernel's, a fifth of a whole training pass of the benchmark
    model (benchmarks/README.md); in fp32 the two are even. From a few hundred tokens on,
    flash is faster and its memory does not grow with the square of the length. GPUs and fp32
    keep PyTorch's own choice.
    """
    if device.type == "cpu" and torch.is_autocast_enabled("cpu") and width <= SHORT_ON_CPU:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    else:
        yield
