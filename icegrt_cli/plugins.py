"""Code the core calls by name: `pkg.module:attribute` import strings, resolved in one place.

A domain (the bundled ad-moderation demo, or a user's) plugs in through strings in configs, so
the core never imports it. The demo's entry points are named here once; a user's come from
their own configs (a source's or a task's `judge`, see `icegrt_cli.judges`).
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path
from typing import Any

from icegrt_cli.errors import ConfigError

DEMO_FILES = "icegrt_cli.demo.plugin:demo_file"
"""`(part) -> Path` of a bundled demo file: `kind: demo` sources and `demo:PART` task paths."""
DEMO_AD_JUDGE = "icegrt_cli.demo.plugin:ad_judge"
"""The judge of the demo's ad reviews (gold score, verdict, recall, evidence, format)."""
DEMO_GENERAL_JUDGE = "icegrt_cli.demo.plugin:general_judge"
"""The judge of the demo's closed-world general answers (exact match after normalising)."""
DEMO_GENERATE = "icegrt_cli.demo.plugin:generate"
"""`(out, seed) -> card`: `icegrt data demo` writes a fresh copy of the demo data."""
TOKENIZER_CORPUS = "icegrt_cli.demo.plugin:tokenizer_corpus"
"""`() -> [Path]`: the JSONL files the preset tokenizer is trained on."""


def load(spec: str, key: str) -> Any:
    """The object `spec` = `pkg.module:attribute` names; a ConfigError naming `key` if there is
    no such module or attribute."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise ConfigError(f"{key}: '{spec}' is not an import string of the form pkg.module:name")
    return _load(module_name, attribute, key)


@cache
def _load(module_name: str, attribute: str, key: str) -> Any:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        # Only the module asked for (or a parent) being absent is the user's typo; a missing
        # dependency inside it is a real error and keeps its traceback.
        if err.name is None or not (module_name + ".").startswith(err.name + "."):
            raise
        raise ConfigError(f"{key}: no module '{module_name}'") from None
    obj = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{key}: module '{module_name}' has no attribute '{attribute}'")
        obj = getattr(obj, part)
    return obj


def load_callable(spec: str, key: str) -> Any:
    """`load`, and a ConfigError when the object is not callable."""
    obj = load(spec, key)
    if not callable(obj):
        raise ConfigError(f"{key}: '{spec}' is not a function ({type(obj).__name__})")
    return obj


def demo_file(part: str, key: str) -> Path:
    """The bundled demo's file of `part`; a ConfigError naming `key` for an unknown part."""
    try:
        return load_callable(DEMO_FILES, key)(part)
    except ValueError as err:
        raise ConfigError(f"{key}: {err}") from None
