"""Memory arithmetic of one model: its weights and training state, its working memory in each
kind of pass, and how an engine spreads them over devices. Pure functions of shapes and counts.

Working memory follows what the stages' code keeps alive (counted per token, in elements):
- a training pass saves, per decoder layer, what autograd needs for the backward pass of a
  Llama block: for each of its two RMSNorms the input, the normalised input and the scaled
  output (3h each), q and k after RoPE, v and the attention output (2 q_dim + 2 kv_dim; k and
  v repeated to 2 q_dim more when grouped-query attention expands them), the four MLP tensors
  gate, up, act(gate) and their product (4 I), and with eager attention the softmax of every
  head over every key (heads x S); gradient checkpointing keeps only each layer's input (h)
  and recomputes one layer at a time. This is the count of Korthikanti et al. 2022 ("Reducing
  Activation Recomputation in Large Transformer Models", section 4.1) redone for Llama's block,
  and it matches the tensors autograd saves for transformers' LlamaDecoderLayer.
- the vocabulary-sized tensors dominate small models: logits (B, S, V) and their gradient, and
  the fp32 log-softmax / softmax tensors over the response (`icegrt_cli.ppo.core`) or over the
  whole row for the SFT cross-entropy (`icegrt_cli.lm.lm_loss_sum`).
- a pass without gradients keeps one layer's tensors at a time, then the logits.
- generation keeps the KV cache: rows x layers x 2 x kv_heads x head_dim x length.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 2**30
FP32 = 4

ENGINES = ("ddp", "fsdp", "zero2", "zero3")
SHARDS_STATES = ("fsdp", "zero2", "zero3")
"""Engines that split gradients and optimizer state over the devices."""
SHARDS_PARAMS = ("fsdp", "zero3")
"""Engines that split the parameters too (and gather one block at a time to use it)."""


@dataclass(frozen=True)
class Shape:
    """What memory depends on in one decoder, read from its config (no weights built)."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    parameters: int
    """Every parameter of the model as a stage holds it (LoRA adapters included)."""
    trainable: int
    """Parameters that train: all of them, or the adapters (and a scalar head) under LoRA."""
    largest_block: int
    """Parameters of the largest block (a decoder layer, the embedding or the head): what
    fsdp / zero3 gather in full to run it."""

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim


@dataclass(frozen=True)
class Bytes:
    """One model's memory on one device, in bytes."""

    params: int = 0
    grads: int = 0
    optimizer: int = 0
    activations: int = 0

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer + self.activations


def dtype_bytes(dtype: str) -> int:
    """float32 | bfloat16 | float16 (model.dtype) in bytes per element."""
    return FP32 if dtype == "float32" else 2


def activation_bytes(weight_bytes: int, precision: str) -> int:
    """Activations are 16-bit when the weights are, or under bf16 / fp16 autocast."""
    return 2 if weight_bytes == 2 or precision in ("bf16", "fp16") else FP32


def optimizer_bytes_per_param(weight_bytes: int, engine: str) -> int:
    """AdamW's two moments. torch's AdamW keeps them in the parameter's dtype (ddp, fsdp);
    DeepSpeed (zero2, zero3) keeps an fp32 master copy and fp32 moments for 16-bit weights
    (the 12 bytes per parameter of Rajbhandari et al. 2020, "ZeRO", section 3.1)."""
    if engine in ("zero2", "zero3") and weight_bytes < FP32:
        return 3 * FP32
    return 2 * weight_bytes


def layer_saved_elements(shape: Shape, seq: int, eager: bool) -> int:
    """Elements per token one decoder layer saves for its backward pass (see module doc)."""
    repeated = 2 * shape.q_dim if shape.kv_heads < shape.heads else 0
    attention = 6 * shape.hidden + 2 * shape.q_dim + 2 * shape.kv_dim + repeated
    scores = shape.heads * seq if eager else 0
    return attention + scores + 4 * shape.intermediate


def layer_transient_elements(shape: Shape, seq: int, eager: bool) -> int:
    """Elements per token alive inside one layer of a pass without gradients: the residual
    and its norm, then the larger of attention (q, k, v, output, eager scores) and the MLP
    (gate, up, and their product)."""
    attention = 2 * shape.q_dim + 2 * shape.kv_dim + (shape.heads * seq if eager else 0)
    return 2 * shape.hidden + max(attention, 3 * shape.intermediate)


def train_body_bytes(
    shape: Shape, rows: int, seq: int, act_bytes: int, checkpointing: bool, eager: bool
) -> int:
    """Activations the decoder body of a training pass holds at the start of its backward."""
    per_layer = layer_saved_elements(shape, seq, eager)
    if checkpointing:  # each layer's input, plus one layer recomputed at a time
        elements = shape.layers * shape.hidden + per_layer
    else:
        elements = shape.layers * per_layer
    return rows * seq * (elements + 3 * shape.hidden) * act_bytes  # + the final norm


def lm_loss_logit_bytes(shape: Shape, rows: int, seq: int, act_bytes: int) -> int:
    """SFT / PPO-ptx cross-entropy over every position: at most three (rows, seq, V) tensors
    are alive at once: the logits, their shifted copy and the fp32 log-softmax at the end of
    the forward pass; the saved log-softmax, the loss's gradient and the log-softmax's
    gradient (all fp32) in the backward pass."""
    return rows * seq * shape.vocab * max(2 * act_bytes + FP32, 3 * FP32)


def policy_logit_bytes(shape: Shape, rows: int, seq: int, response: int, act_bytes: int) -> int:
    """The PPO actor loss: the full logits and their gradient (model dtype), and five fp32
    (rows, response, V) tensors: the tempered logits and softmax saved for log-probs and
    entropy, and three gradients of the same size in the backward pass."""
    full = rows * seq * shape.vocab * 2 * act_bytes
    return full + rows * response * shape.vocab * 5 * FP32


def scoring_bytes(
    shape: Shape, rows: int, seq: int, response: int, act_bytes: int, eager: bool, logits: bool
) -> int:
    """Peak of a pass without gradients over `rows` rows: one layer's tensors, or the logits
    with the two fp32 (rows, response, V) tensors of log-probs (`logits`: a causal LM scored
    for log-probs; a scalar head has none)."""
    layer = rows * seq * layer_transient_elements(shape, seq, eager) * act_bytes
    if not logits:
        return layer
    head = rows * seq * shape.vocab * act_bytes + rows * response * shape.vocab * 2 * FP32
    return max(layer, head)


def kv_cache_bytes(shape: Shape, rows: int, length: int, act_bytes: int) -> int:
    """Keys and values of every layer for `rows` sequences of `length` tokens."""
    return rows * shape.layers * 2 * shape.kv_dim * length * act_bytes


def generation_bytes(shape: Shape, rows: int, prompt: int, length: int, act_bytes: int) -> int:
    """Sampling `rows` responses: the KV cache at full length, the prompt's pre-fill pass, and
    the fp32 next-token logits and probabilities of each step."""
    prefill = rows * prompt * layer_transient_elements(shape, prompt, eager=False) * act_bytes
    return kv_cache_bytes(shape, rows, length, act_bytes) + prefill + rows * shape.vocab * 3 * FP32


@dataclass(frozen=True)
class Placement:
    """Where one model's state lives under an engine: bytes per device and in CPU memory."""

    device: Bytes
    cpu: int


def place(
    params: int, grads: int, optimizer: int, engine: str, devices: int, offload: bool
) -> Placement:
    """Spread one model's full-size `params`, `grads` and `optimizer` state over `devices` as
    `engine` does: zero2 splits gradients and optimizer state, fsdp and zero3 the parameters
    too. `offload` keeps the optimizer state (fsdp, zero3: the parameter shards too) in CPU
    memory."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine}")
    states = devices if engine in SHARDS_STATES else 1
    shards = devices if engine in SHARDS_PARAMS else 1
    params, grads, optimizer = params // shards, grads // states, optimizer // states
    cpu = 0
    if offload:
        cpu += optimizer
        optimizer = 0
        if engine in SHARDS_PARAMS:
            cpu += params
            params = 0
    return Placement(Bytes(params, grads, optimizer), cpu)


def gathered_bytes(block_bytes: int, engine: str) -> int:
    """Working memory fsdp / zero3 add while a model runs: its largest block gathered whole."""
    return block_bytes if engine in SHARDS_PARAMS else 0


def parse_size(text: str) -> int:
    """'80GiB', '80GB', '512MiB', '1.5TiB' or a plain number of GiB, in bytes."""
    units = {
        "tib": 2**40,
        "gib": GIB,
        "mib": 2**20,
        "kib": 2**10,
        "tb": 10**12,
        "gb": 10**9,
        "mb": 10**6,
        "kb": 10**3,
        "b": 1,
    }
    value = text.strip().lower().replace(" ", "")
    for unit, scale in units.items():
        if value.endswith(unit):
            number, factor = value[: -len(unit)], scale
            break
    else:
        number, factor = value, GIB
    try:
        amount = float(number)
    except ValueError:
        raise ValueError(f"'{text}' is not a size (e.g. 80GiB, 40GB, 512MiB)") from None
    if amount <= 0:
        raise ValueError(f"'{text}': a size must be positive")
    return int(amount * factor)


def human(size: int) -> str:
    """Bytes as GiB (or MiB below 1 GiB), as the tables print them."""
    if size == 0:
        return "0"
    if size < GIB:
        return f"{size / 2**20:,.1f} MiB"
    return f"{size / GIB:,.2f} GiB"
