"""The stages, named once: CLI verb, config name, module, schema, help and examples.

The CLI, the launcher, the pipeline and the report all read this table; adding a stage is
one entry here plus its module and its `conf/<name>.yaml`.
"""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from icegrt_cli.config import EvalConfig, PipelineConfig, PPOConfig, SFTConfig, TrainRMConfig


@dataclass(frozen=True)
class Stage:
    name: str
    """Config name and output folder (`runs/NAME/<name>/`)."""
    verb: str
    """The `icegrt` command."""
    module: str
    """Module with `run(cfg, out_dir, run_root) -> dict` and, optionally, `check(cfg)`."""
    schema: type
    summary: str
    examples: tuple[str, ...]


STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage(
            "sft",
            "sft",
            "icegrt_cli.stages.sft",
            SFTConfig,
            "Supervised fine-tuning on demonstrations (prompt masked, domain + general).",
            (
                "icegrt sft run.name=demo",
                "icegrt sft model=small optim.lr=1e-3",
                "icegrt sft run.name=lr -m optim.lr=1e-3,3e-3",
            ),
        ),
        Stage(
            "train_rm",
            "train-rm",
            "icegrt_cli.stages.reward",
            TrainRMConfig,
            "Train the reward model on preference pairs (Bradley-Terry).",
            (
                "icegrt train-rm run.name=demo",
                "icegrt train-rm run.name=demo -m model@reward_model=tiny,small",
            ),
        ),
        Stage(
            "ppo",
            "ppo",
            "icegrt_cli.stages.ppo",
            PPOConfig,
            "PPO with actor, reference, reward model and critic (the ICE-GRT step).",
            (
                "icegrt ppo run.name=demo kl=adaptive reward=running_norm",
                "icegrt ppo run.name=demo -m kl.coef=0.01,0.05 ppo.advantage_norm=true,false",
            ),
        ),
        Stage(
            "eval",
            "eval",
            "icegrt_cli.stages.evaluate",
            EvalConfig,
            "Evaluate checkpoints in-domain and on the 12 general benchmarks.",
            (
                "icegrt eval run.name=demo",
                "icegrt eval 'model.paths=[runs/demo/sft/model,runs/demo/ppo/model]' "
                "'tasks=[ad_moderation,arc_easy]'",
            ),
        ),
        Stage(
            "pipeline",
            "pipeline",
            "icegrt_cli.stages.pipeline",
            PipelineConfig,
            "sft -> train-rm -> ppo -> eval in one run; finished stages skip.",
            (
                "icegrt pipeline run.name=demo",
                "icegrt pipeline run.name=demo ppo.kl=adaptive train_rm.reward_model=small",
            ),
        ),
    )
}

PIPELINE_ORDER: tuple[str, ...] = ("sft", "train_rm", "ppo", "eval")
"""The stages a pipeline runs, in order; every one except the pipeline itself."""


def register_configs() -> None:
    """Put each stage schema in Hydra's ConfigStore so `<stage>.yaml` can extend it."""
    store = ConfigStore.instance()
    for stage in STAGES.values():
        store.store(name=f"{stage.name}_schema", node=stage.schema)
