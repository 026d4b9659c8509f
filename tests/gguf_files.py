"""A tiny Llama written as a GGUF file, the way llama.cpp lays one out, for the import tests.

Its tokenizer is a byte-level BPE trained on a few sentences, stored as GGUF's `gpt2` model with
ChatML role tokens and pad == EOS, like SmolLM2's; its weights are random F32 tensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TEXT = [
    "Is this ad allowed? Miracle pill cures diabetes in 7 days, guaranteed!",
    "No: it makes an unproven health claim.",
    "Buy one get one free on running shoes this weekend only.",
] * 20
HIDDEN, LAYERS, HEADS, KV_HEADS, FFN, CONTEXT = 32, 2, 4, 2, 64, 256


def _tokenizer() -> tuple[list[str], list[str]]:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(TEXT, trainer=trainer)
    state = json.loads(backend.to_str())["model"]
    vocab = sorted(state["vocab"].items(), key=lambda item: item[1])
    merges = [m if isinstance(m, str) else " ".join(m) for m in state["merges"]]
    return [token for token, _ in vocab], merges


def write_tiny_gguf(path: Path, seed: int = 0) -> Path:
    """Write the tiny model to `path` (F32 tensors, `llama` architecture) and return it."""
    import gguf

    tokens, merges = _tokenizer()
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-chat")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(
        [gguf.TokenType.CONTROL if t in SPECIALS else gguf.TokenType.NORMAL for t in tokens]
    )
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index("<|im_start|>"))
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_pad_token_id(tokens.index("<|im_end|>"))
    writer.add_chat_template(CHATML)

    def tensor(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.2).astype(np.float32))

    kv = HIDDEN // HEADS * KV_HEADS
    tensor("token_embd.weight", len(tokens), HIDDEN)
    for block in range(LAYERS):
        writer.add_tensor(f"blk.{block}.attn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
        tensor(f"blk.{block}.attn_q.weight", HIDDEN, HIDDEN)
        tensor(f"blk.{block}.attn_k.weight", kv, HIDDEN)
        tensor(f"blk.{block}.attn_v.weight", kv, HIDDEN)
        tensor(f"blk.{block}.attn_output.weight", HIDDEN, HIDDEN)
        writer.add_tensor(f"blk.{block}.ffn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
        tensor(f"blk.{block}.ffn_gate.weight", FFN, HIDDEN)
        tensor(f"blk.{block}.ffn_up.weight", FFN, HIDDEN)
        tensor(f"blk.{block}.ffn_down.weight", HIDDEN, FFN)
    writer.add_tensor("output_norm.weight", np.ones(HIDDEN, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
