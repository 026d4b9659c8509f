"""Build, save and load the models and tokenizer every stage uses.

Size presets (`model=tiny|small|base`) are built from a transformers config with a tokenizer
trained on the bundled demo text, then written with `save_pretrained` and read back through
`from_pretrained` — the exact path a real checkpoint (`model=hf model.name_or_path=...`) takes.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from icegrt_cli import plugins
from icegrt_cli.atomic import writing_folder
from icegrt_cli.cache import cache_dir
from icegrt_cli.config import ModelConfig
from icegrt_cli.errors import ConfigError
from icegrt_cli.model_fetch import REGISTRY_MODELS

PAD, EOS, BOS = "<|pad|>", "<|end|>", "<|bos|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")

# Roles are special tokens, the end of every turn is EOS, and generation starts after the
# assistant tag: a response is exactly what the model must produce, ended by EOS.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    return DTYPES[name]


def tokenizer_corpus() -> list[Path]:
    """The bundled training files the preset tokenizer is trained on (never the test splits):
    the demo's, through its `plugins.TOKENIZER_CORPUS` entry point."""
    return list(plugins.load_callable(plugins.TOKENIZER_CORPUS, "model.tokenizer")())


def _iter_corpus_text(files: Iterable[Path]) -> Iterable[str]:
    for path in files:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                for value in record.values():
                    if isinstance(value, str):
                        yield value


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer with dedicated pad / EOS tokens and the chat template."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    specials = [PAD, EOS, BOS, *ROLE_TOKENS]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        eos_token=EOS,
        bos_token=BOS,
        additional_special_tokens=list(ROLE_TOKENS),
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def preset_tokenizer_path(vocab_size: int) -> Path:
    """Train (once) and cache the preset tokenizer; the cache key covers corpus and vocab size."""
    files = tokenizer_corpus()
    digest = hashlib.sha256(str(vocab_size).encode())
    for path in files:
        digest.update(path.read_bytes())
    folder = cache_dir() / "tokenizers" / f"bpe-{vocab_size}-{digest.hexdigest()[:12]}"
    if not (folder / "tokenizer.json").exists():
        tokenizer = train_tokenizer(_iter_corpus_text(files), vocab_size)
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        tokenizer.save_pretrained(tmp)
        try:
            tmp.replace(folder)
        except OSError:  # another process (of a launched run) published its identical copy first
            shutil.rmtree(tmp)
            if not (folder / "tokenizer.json").exists():
                raise
    return folder


def check_model_path(name_or_path: str, key: str = "model.name_or_path") -> None:
    """Before any work: a path-like value that does not exist is a typo, and anything else
    that is not a local folder must be a hub id that the cache or the network can give."""
    # A hub id is `name` or `owner/name`: more slashes than that can only mean a folder.
    looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1
    if looks_local and not Path(name_or_path).expanduser().exists():
        name = Path(name_or_path).name
        hint = f"; bring it with `icegrt model fetch {name}`" if name in REGISTRY_MODELS else ""
        raise ConfigError(f"{key}: no such model folder '{name_or_path}'{hint}")
    if not Path(name_or_path).expanduser().exists():
        _check_hub_id(name_or_path, key)


def _check_hub_id(name: str, key: str) -> None:
    """Fail at once, not after a minute of download retries, when a hub id cannot be had."""
    from huggingface_hub import constants
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        raise ConfigError(f"{key}: '{name}' is neither a local folder nor a hub id") from None
    if (Path(constants.HF_HUB_CACHE) / f"models--{name.replace('/', '--')}").is_dir():
        return
    offline = constants.HF_HUB_OFFLINE or os.environ.get("TRANSFORMERS_OFFLINE", "") in TRUE
    if offline or not _hub_reachable(constants.ENDPOINT):
        raise ConfigError(
            f"{key}: {name} was taken for a hub id; it is not a local folder and no network "
            "or cache has it"
        )


TRUE = ("1", "true", "yes", "on", "ON", "TRUE", "YES")


def _hub_reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """Whether a connection to the hub opens within `timeout` (assumed through a proxy)."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json")


def check_model_folder(path: str | Path, key: str, tokenizer: bool = False) -> None:
    """A local model folder holds a config and weights (or a tokenizer): say which is missing
    in one line instead of transformers' guess at what was meant."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return  # a hub id: checked by check_model_path
    if tokenizer:
        if not any((folder / name).exists() for name in TOKENIZER_FILES):
            raise ConfigError(
                f"{key}: {folder} has no tokenizer ({', '.join(TOKENIZER_FILES[:2])}); copy "
                "the tokenizer files in, or name them with model.tokenizer"
            )
        return
    if not (folder / "config.json").exists():
        raise ConfigError(f"{key}: {folder} is not a model folder (no config.json)")
    if not any(next(folder.glob(pattern), None) for pattern in WEIGHT_FILES):
        raise ConfigError(
            f"{key}: {folder} has no weights (*.safetensors or pytorch_model.bin); was its "
            "save interrupted?"
        )


@contextmanager
def loading(source: str | Path) -> Iterator[None]:
    """One line naming `source` for the ways a checkpoint can refuse to load."""
    try:
        yield
    except ValueError as err:
        if "trust_remote_code" not in str(err):
            raise
        raise ConfigError(
            f"{source} ships its own Python code; icegrt runs it only with "
            "model.trust_remote_code=true (read that code first)"
        ) from err
    except pickle.UnpicklingError as err:
        raise ConfigError(
            f"{source}: refused to unpickle its weights, which hold more than tensors "
            "(torch.load weights_only); load only files you trust, or convert them to safetensors"
        ) from err
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines()]
        mismatch = [line for line in lines if "size mismatch" in line]
        if not mismatch and "ignore_mismatched_sizes" not in str(err):
            raise
        # transformers 5 logs the mismatched keys in its load report, above this line.
        detail = mismatch[0][:200] if mismatch else "see the load report above"
        raise ConfigError(f"{source}: its weights do not fit its config.json ({detail})") from err


def load_tokenizer(cfg: ModelConfig) -> PreTrainedTokenizerBase:
    """The tokenizer of a checkpoint or preset, padded on the right with a real pad token."""
    source = cfg.tokenizer or cfg.name_or_path
    if source is None:
        source = str(preset_tokenizer_path(cfg.vocab_size))
    else:
        key = "model.tokenizer" if cfg.tokenizer else "model.name_or_path"
        check_model_path(source, key)
        check_model_folder(source, key, tokenizer=True)
    with loading(source):
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=cfg.trust_remote_code)
    if cfg.chat_template:
        tokenizer.chat_template = cfg.chat_template
    if tokenizer.chat_template is None:
        tokenizer.chat_template = CHAT_TEMPLATE
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        # pad == eos makes "last real token" ambiguous for the reward model: add a real pad.
        tokenizer.add_special_tokens({"pad_token": PAD})
    tokenizer.padding_side = "right"
    return tokenizer


def build_preset_config(cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
    heads = cfg.num_heads
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=heads,
        num_key_value_heads=cfg.num_kv_heads or heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=cfg.tie_word_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        attention_dropout=0.0,
    )


def materialize(cfg: ModelConfig, out_dir: Path, seed: int) -> Path:
    """Return a `from_pretrained` folder for `cfg`: the given checkpoint, or a built preset.

    A preset is initialised from `seed` and written (model + tokenizer) to `out_dir`, so every
    later load goes through the same code a real checkpoint does.
    """
    if cfg.name_or_path is not None:
        check_model_path(cfg.name_or_path)
        return Path(cfg.name_or_path) if Path(cfg.name_or_path).exists() else cfg.name_or_path
    spec = {key: getattr(cfg, key) for key in PRESET_KEYS} | {"seed": seed}
    record = out_dir / PRESET_FILE
    if record.exists() and json.loads(record.read_text()) == spec:
        return out_dir  # built before from the same settings (a rerun or a resume)
    tokenizer = load_tokenizer(cfg)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(build_preset_config(cfg, tokenizer))
    with writing_folder(out_dir) as folder:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / PRESET_FILE).write_text(json.dumps(spec))
    return out_dir


PRESET_KEYS = (
    "tokenizer",
    "hidden_size",
    "num_layers",
    "num_heads",
    "num_kv_heads",
    "intermediate_size",
    "max_position_embeddings",
    "vocab_size",
    "tie_word_embeddings",
)
PRESET_FILE = "icegrt_preset.json"
"""Beside a built preset: the settings and seed it was built from. A rerun with other sizes
rebuilds it instead of silently training the old model."""


DROPOUT_ATTRIBUTES = ("attention_dropout", "attn_dropout", "dropout", "dropout_p", "attn_pdrop")


def without_dropout(config: PretrainedConfig) -> PretrainedConfig:
    """`config` with every dropout probability set to 0, before the model is built from it.

    Modules copy these values at construction (attention keeps its own `attention_dropout`), so
    editing the config of a built model changes nothing: dropout would make the PPO update pass
    differ from the rollout pass (ratio != 1 at lr = 0).
    """
    for key, value in list(config.to_dict().items()):
        if ("dropout" in key or "pdrop" in key) and isinstance(value, float):
            setattr(config, key, 0.0)
    return config


def _prepare(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    # Belt and braces for architectures that hard-code a rate: no module may drop anything.
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        for name in DROPOUT_ATTRIBUTES:
            if isinstance(getattr(module, name, None), float):
                setattr(module, name, 0.0)
    return model


def checkpoint_context_length(path: str | Path, cfg: ModelConfig) -> int:
    """`context_length` of the checkpoint in `path`, read from its config alone."""
    with loading(path):
        config = AutoConfig.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    return context_length(config)


def context_length(config: PretrainedConfig, fallback: int = 2048) -> int:
    """The longest sequence the loaded checkpoint takes (prompt + response), from its config."""
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return fallback


def load_causal_lm(
    path: str | Path, cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase
) -> PreTrainedModel:
    check_model_folder(path, "model.name_or_path")
    with loading(path):
        config = without_dropout(
            AutoConfig.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
        )
        model = AutoModelForCausalLM.from_pretrained(
            path,
            config=config,
            dtype=torch_dtype(cfg.dtype),
            trust_remote_code=cfg.trust_remote_code,
            **({"attn_implementation": cfg.attn_implementation} if cfg.attn_implementation else {}),
        )
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return _prepare(model, tokenizer)


def load_scalar_model(
    path: str | Path, cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase
) -> PreTrainedModel:
    """A backbone with a one-output head: the reward model and the critic.

    From a causal-LM folder the head is new; from a reward-model folder it is loaded.
    """
    check_model_folder(path, "model.name_or_path")
    with loading(path):
        config = without_dropout(
            AutoConfig.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
        )
        config.num_labels = 1
        config.pad_token_id = tokenizer.pad_token_id
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            config=config,
            dtype=torch_dtype(cfg.dtype),
            trust_remote_code=cfg.trust_remote_code,
        )
    if cfg.gradient_checkpointing:  # the reward model in training, and PPO's critic
        model.gradient_checkpointing_enable()
    return _prepare(model, tokenizer)
