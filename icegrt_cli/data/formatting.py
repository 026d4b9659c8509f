"""Chat formatting and tokenisation with the prompt masked out of the loss.

Prompt and response are encoded separately and joined, so the response tokens a model is
trained on are exactly the tokens it produces at generation time after the same prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from icegrt_cli.errors import DataError

IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]
    """IGNORE on prompt tokens; the token id on response tokens (EOS included)."""


def chat_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> str:
    """The templated conversation so far, ending where the assistant's answer begins."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str) -> list[int]:
    text = chat_prompt(tokenizer, [{"role": "user", "content": prompt}])
    return tokenizer(text, add_special_tokens=False).input_ids


def encode_response(tokenizer: PreTrainedTokenizerBase, response: str) -> list[int]:
    """Response tokens ended by EOS, as the model must generate them."""
    return tokenizer(response, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]


def _encode_messages(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> Encoded:
    """Multi-turn: every assistant turn is a target, everything else is context."""
    ids: list[int] = []
    labels: list[int] = []
    done = ""
    for index, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        context = chat_prompt(tokenizer, messages[:index])
        if not context.startswith(done):
            raise DataError("the chat template does not render turns as prefixes of each other")
        context_ids = tokenizer(context[len(done) :], add_special_tokens=False).input_ids
        answer_ids = encode_response(tokenizer, message["content"])
        ids += context_ids + answer_ids
        labels += [IGNORE] * len(context_ids) + answer_ids
        done = context + message["content"] + tokenizer.eos_token
    return Encoded(ids, labels)


def encode_sft(tokenizer: PreTrainedTokenizerBase, record: dict[str, Any]) -> Encoded:
    if "messages" in record:
        return _encode_messages(tokenizer, record["messages"])
    prompt_ids = encode_prompt(tokenizer, record["prompt"])
    response_ids = encode_response(tokenizer, record["response"])
    return Encoded(prompt_ids + response_ids, [IGNORE] * len(prompt_ids) + response_ids)


def check_sft_record(record: dict[str, Any]) -> str | None:
    """SFT takes {prompt, response} or {messages: [{role, content}, ...]} with an assistant turn."""
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            return "field 'messages' must be a non-empty list"
        for turn in messages:
            if not isinstance(turn, dict) or not {"role", "content"} <= set(turn):
                return "each message needs 'role' and 'content'"
        if not any(turn["role"] == "assistant" for turn in messages):
            return "'messages' has no assistant turn to learn from"
        return None
    for name in ("prompt", "response"):
        if name not in record:
            return f"missing field '{name}' (fields present: {sorted(record)})"
        if not isinstance(record[name], str) or not record[name].strip():
            return f"field '{name}' must be a non-empty string"
    return None
