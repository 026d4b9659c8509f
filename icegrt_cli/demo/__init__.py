"""The embedded advertising-moderation demo: generated data set, ideal answers, gold scorer.

`demo_file(part)` gives the bundled copy generated with the default seed and config;
`generate_demo` writes a fresh one. See CARD.md next to the bundled files for the numbers.
A plug-in: the core never imports this package; it names the entry points in `plugin.py`
(judges, files, tokenizer corpus, generator) by import string.
"""

from icegrt_cli.demo.answers import ideal_response
from icegrt_cli.demo.bundle import PARTS, demo_file
from icegrt_cli.demo.config import DemoConfig
from icegrt_cli.demo.general import general_correct
from icegrt_cli.demo.generator import generate_demo
from icegrt_cli.demo.gold import GoldScore, gold_score, parse_answer
from icegrt_cli.demo.policies import POLICIES, POLICY_BY_CODE, Policy

__all__ = [
    "PARTS",
    "POLICIES",
    "POLICY_BY_CODE",
    "DemoConfig",
    "GoldScore",
    "Policy",
    "demo_file",
    "general_correct",
    "generate_demo",
    "gold_score",
    "ideal_response",
    "parse_answer",
]
