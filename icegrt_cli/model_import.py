"""`icegrt model import-gguf`: a GGUF checkpoint becomes a plain transformers folder.

Registries carry small chat models as GGUF files. transformers reads GGUF (with the `gguf`
package) and dequantises it to fp32; the folder written here drops the GGUF quantisation marker
so that it reloads with plain `from_pretrained`, the path every stage takes. The import proves
itself: the saved folder's log-probs on a fixed text must equal the GGUF model's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from icegrt_cli.atomic import writing_folder
from icegrt_cli.errors import ConfigError, DataError
from icegrt_cli.wheels import sha256

CHECK_TEXT = (
    "Is this ad allowed? 'Miracle pill cures diabetes in 7 days, guaranteed!' "
    "No: it makes an unproven health claim."
)
"""The text whose log-probs the GGUF model and the saved folder must agree on."""

TOLERANCE = 1e-4
"""Largest log-prob difference accepted between the GGUF model and its saved folder (fp32)."""

RECORD = "icegrt_import.json"
"""Beside the imported weights: where they came from and how well the reload matched."""


@dataclass(frozen=True)
class Imported:
    """What an import wrote: the folder, its source, size and the reload check's result."""

    folder: str
    source: str
    sha256: str
    parameters: int
    architecture: str
    context_length: int
    max_logprob_diff: float

    @classmethod
    def read(cls, folder: Path) -> Imported | None:
        record = folder / RECORD
        if not record.is_file():
            return None
        try:
            return cls(**json.loads(record.read_text()))
        except (ValueError, TypeError):
            return None  # an older or damaged record: import again


def require_gguf() -> None:
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise ConfigError(
            "reading GGUF files needs the gguf package: pip install 'icegrt-cli[gguf]' "
            "(or pip install gguf)"
        ) from None


def token_logprobs(model: PreTrainedModel, ids: torch.Tensor) -> torch.Tensor:
    """log p(token_t | tokens_<t) for every token after the first."""
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, :-1].float()
    return torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)


def _read_gguf(path: Path) -> tuple[PreTrainedModel, object]:
    """Model (fp32) and tokenizer from a GGUF file, or one line saying why they cannot be read."""
    kwargs = {"gguf_file": path.name}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path.parent, dtype=torch.float32, **kwargs)
    except Exception as err:  # a torn or foreign file fails deep in the reader, any which way
        why = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DataError(f"{path}: transformers cannot read this GGUF file ({why})") from None
    return model.eval(), tokenizer


def _plain_config(model: PreTrainedModel) -> None:
    """Forget the GGUF origin: the weights are now plain fp32 tensors."""
    for holder in (model.config, model):
        if hasattr(holder, "quantization_config"):
            delattr(holder, "quantization_config")
    model.hf_quantizer = None
    model.is_quantized = False


def import_gguf(path: Path, out: Path) -> Imported:
    """Write `path` (a GGUF file) as a safetensors transformers folder at `out`.

    The folder appears only once its reload matched the GGUF model within `TOLERANCE`; a failed
    import leaves any earlier folder at `out` as it was.
    """
    path = path.expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such GGUF file")
    require_gguf()
    model, tokenizer = _read_gguf(path)
    _plain_config(model)
    ids = tokenizer(CHECK_TEXT, return_tensors="pt").input_ids
    expected = token_logprobs(model, ids)
    config = model.config
    with writing_folder(out) as folder:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        reloaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        diff = (token_logprobs(reloaded, ids) - expected).abs().max().item()
        if not diff <= TOLERANCE:
            raise DataError(
                f"{path}: the saved folder's log-probs differ from the GGUF model's by {diff:.2e} "
                f"(more than {TOLERANCE:.0e}); nothing was written to {out}"
            )
        record = Imported(
            folder=str(out),
            source=str(path),
            sha256=sha256(path),
            parameters=sum(p.numel() for p in model.parameters()),
            architecture=config.model_type,
            context_length=int(getattr(config, "max_position_embeddings", 0) or 0),
            max_logprob_diff=diff,
        )
        (folder / RECORD).write_text(json.dumps(asdict(record), indent=2) + "\n")
    return record
