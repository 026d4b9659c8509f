"""The typed schema of every stage: the single source of defaults.

Every default a user gets is a dataclass default here; YAML under `conf/` only chooses config
groups and presets (and says why where a preset differs). Hydra checks every override against
these dataclasses, so an unknown key or a wrong type fails before any work starts; a field
made with `one_of` also has its value checked against its choices (`icegrt_cli.schema`).
Each field's docstring is what `icegrt STAGE --help` shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


def one_of(default: str | None, *others: str | None) -> Any:
    """A string field whose value must be `default` or one of `others`, checked with every
    other setting before anything loads."""
    return field(default=default, metadata={"choices": (default, *others)})


@dataclass
class RunConfig:
    name: str | None = None
    """Stable run name: outputs go to `<root>/<name>/<stage>/`, where later stages find them."""
    root: str = "runs"
    """Folder that holds all runs."""
    seed: int = 0
    """Seeds model init, data order, sampling and dropout-free training alike."""
    resume: str | None = None
    """`latest` (newest checkpoint in this run's folder) or a `checkpoints/step-N` path.
    Refused when the stage already finished or a setting differs from the checkpoint's
    (save / stop / log cadence and launch settings may change); see `force`."""
    force: bool = False
    """Start a finished training stage again (unmarked finished once its inputs load), resume a
    finished stage, or resume from a checkpoint made with other settings; the differing keys
    are printed. Without it each is refused in one line."""
    precision: str = one_of("fp32", "bf16", "fp16")
    """fp32 | bf16 | fp16 (autocast through Accelerate)."""
    cpu: bool = False
    """Force CPU even when an accelerator is present."""
    num_threads: int | None = None
    """torch intra-op threads; default: the cores this process may use, at most 8."""
    tensorboard: bool = False
    """Also write TensorBoard event files beside metrics.jsonl."""
    log_every: int = 10
    """Steps between metric records of SFT and the reward model (averaged over them); PPO
    records every step."""
    progress: bool = True
    """Live rich progress bar (off for batch jobs with captured logs)."""
    debug: bool = False
    """Show the full traceback of an error, not just its one line (also: ICEGRT_DEBUG=1)."""


@dataclass
class ModelConfig:
    name_or_path: str | None = None
    """A local `save_pretrained` folder or a hub id; None builds the size preset below."""
    from_stage: str | None = one_of(None, "sft", "train_rm")
    """Take the final model of this stage of the same run (`sft`, `train_rm`); needs run.name."""
    tokenizer: str | None = None
    """Tokenizer folder or hub id; defaults to name_or_path, or a BPE trained on the demo text."""
    hidden_size: int = 128
    """Preset width (ignored for a checkpoint)."""
    num_layers: int = 4
    """Preset depth."""
    num_heads: int = 4
    """Preset attention heads."""
    num_kv_heads: int | None = None
    """Preset key/value heads (grouped-query attention); None: as many as num_heads."""
    intermediate_size: int = 384
    """Preset MLP width."""
    max_position_embeddings: int = 512
    """Preset context length. A checkpoint's own context is read from its config."""
    vocab_size: int = 2048
    """Vocabulary of the tokenizer trained for presets."""
    tie_word_embeddings: bool = True
    """Preset: the output layer shares the input embedding."""
    dtype: str = one_of("float32", "bfloat16", "float16")
    """Weights dtype at load: float32 | bfloat16 | float16."""
    trust_remote_code: bool = False
    """Run code shipped with a checkpoint. Off unless you trust its source."""
    chat_template: str | None = None
    """Jinja chat template overriding the tokenizer's own."""
    attn_implementation: str | None = one_of(None, "eager", "sdpa", "flash_attention_2")
    """eager | sdpa | flash_attention_2; None lets transformers choose."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more time."""


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
"""The attention and MLP projections of Llama-family decoders (SmolLM2, Llama, Mistral, Qwen)."""


@dataclass
class PeftConfig:
    """Parameter-efficient fine-tuning: `peft=none|lora`."""

    kind: str = one_of("none", "lora")
    """none: every weight trains. lora: the base stays frozen and low-rank adapters train
    (through PEFT); the stage's `model/` is saved merged, the adapter beside it in `adapter/`."""
    r: int = 16
    """LoRA rank of each adapted projection."""
    alpha: float = 32.0
    """LoRA scale numerator: the update is (alpha / r) * B A."""
    dropout: float = 0.0
    """Dropout on the adapter input (SFT and reward model only: PPO refuses it, because the
    update pass would then score tokens differently from the rollout pass)."""
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    """Module names that get adapters; `[all-linear]` adapts every linear layer but the head."""
    share_base: bool = True
    """PPO with critic_init=reward_model: the reward model is the critic with its adapters
    turned off, one copy of their common base in memory instead of two."""


@dataclass
class EngineConfig:
    """How a stage spreads over processes (Accelerate): `engine=ddp|fsdp|zero2|zero3`."""

    kind: str = one_of("ddp", "fsdp", "zero2", "zero3")
    """ddp: each process holds whole models and gradients are all-reduced. fsdp: PyTorch FSDP
    shards parameters, gradients and optimizer state. zero2: DeepSpeed ZeRO stage 2 shards
    optimizer state and gradients. zero3: DeepSpeed ZeRO stage 3 shards parameters too."""
    offload: bool = False
    """Keep optimizer state (fsdp and zero3: parameters too) in CPU memory between uses."""


@dataclass
class SourceConfig:
    kind: str = one_of("demo", "file", "hub")
    """demo (the bundled demo's files, icegrt_cli/demo) | file (jsonl, json, csv, parquet by
    extension) | hub (a datasets hub name)."""
    path: str | None = None
    """File path or hub name; for demo: the bundled part (None: the stage's own part)."""
    eval_path: str | None = None
    """Held-out file / hub split for this source; None: hold out `data.eval_fraction`."""
    split: str = "train"
    """Split name for hub sources."""
    eval_split: str | None = None
    """Held-out split name for hub sources; None: hold out `data.eval_fraction`."""
    weight: float = 1.0
    """Examples per epoch = weight x source size (0.5 samples half, 2.0 repeats twice)."""
    fields: dict[str, str] = field(default_factory=dict)
    """Map the stage's field names to this source's, e.g. {prompt: question, response: answer}."""
    limit: int | None = None
    """Use only the first N records (after reading)."""
    judge: str | None = None
    """Import string `pkg.module:function` of the judge of this source's records, a function
    (response, record) -> Judgement (see icegrt_cli.judges): PPO logs its gold score of rollouts
    and held-out answers. The demo's prompts and pairs name `icegrt_cli.demo.plugin:ad_judge`."""
    gold_pairs: str | None = None
    """train-rm: import string of a function (seed) -> [GoldCandidate], held-out prompts each
    with two answers; how often the reward model ranks them as `judge` does is logged as
    gold_agreement. The demo's pairs name `icegrt_cli.demo.plugin:gold_check_pairs`."""


@dataclass
class DataConfig:
    sources: list[SourceConfig] = field(default_factory=lambda: [SourceConfig()])
    """Where examples come from, mixed by weight."""
    eval_fraction: float = 0.05
    """Share of each source held out for eval loss when it has no eval_path."""
    max_length: int = 512
    """Longest tokenised example; longer ones are skipped and counted."""
    packing: bool = False
    """Pack several examples into one row of max_length tokens (fewer pad tokens)."""


@dataclass
class OptimConfig:
    lr: float = 1e-3
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.0
    """AdamW's decoupled weight decay."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    """AdamW's moment decay rates."""
    eps: float = 1e-8
    """AdamW's denominator floor."""
    scheduler: str = one_of("cosine", "linear", "constant")
    """cosine | linear | constant, after warmup."""
    warmup_steps: int = 0
    """Steps of linear warm-up from 0 to lr; 0: use warmup_ratio."""
    warmup_ratio: float = 0.03
    """Used when warmup_steps is 0."""
    min_lr_ratio: float = 0.1
    """Final lr as a share of lr (cosine / linear)."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm; 0 disables."""


@dataclass
class TrainConfig:
    epochs: float = 1.0
    """Passes over the training mix; ignored when max_steps > 0."""
    max_steps: int = 0
    """Optimizer steps of the whole run; 0: from `epochs`."""
    batch_size: int = 16
    """Micro-batch per process."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    eval_every: int = 100
    """Optimizer steps between held-out evaluations (0: only at the end)."""
    eval_batches: int = 0
    """Cap on eval micro-batches (0: the whole eval split)."""
    save_every: int = 100
    """Optimizer steps between checkpoints (0: never mid-run)."""
    keep_last: int = 2
    """Checkpoints kept; older ones are deleted."""
    stop_after: int = 0
    """Stop (as if killed) after this many steps, leaving the checkpoint; for testing resume."""


@dataclass
class SFTConfig:
    stage: str = "sft"
    """Which stage this config runs (fixed)."""
    run: RunConfig = field(default_factory=RunConfig)
    """Output folder, seed, resume, precision, threads, logging."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The model to fine-tune: `model=tiny|small|base` (built) or `model=hf` (a checkpoint)."""
    engine: EngineConfig = field(default_factory=EngineConfig)
    """Multi-process engine: `engine=ddp|fsdp|zero2|zero3`."""
    peft: PeftConfig = field(default_factory=PeftConfig)
    """Full fine-tuning or LoRA adapters: `peft=none|lora`."""
    data: DataConfig = field(default_factory=DataConfig)
    """Demonstrations: `data=demo|jsonl|hub|mix`."""
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=3e-3, weight_decay=0.01, warmup_ratio=0.05)
    )
    """A tiny model from scratch learns fast: lr 3e-3 (use ~2e-5 for a pretrained model)."""
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=4.0, eval_every=50, save_every=50)
    )
    """4 epochs: on the demo, quoting the evidence kept improving through the fourth."""
    sample_prompts: int = 2
    """Held-out prompts answered by the final model and printed, to see what it learned."""
    loss_per: str = one_of("token", "example")
    """token: the loss is averaged over all response tokens of a step, so long answers weigh
    more. example: averaged within each example first, so a one-word answer counts as much as
    a long analysis (an alternative to up-weighting short-answer sources)."""


@dataclass
class RewardLossConfig:
    """The pairwise loss of the reward model."""

    margin: float = 0.0
    """Bradley-Terry with margin: -log sigmoid(r_chosen - r_rejected - margin)."""
    center_coef: float = 0.0
    """L2 penalty coef x mean(r^2) on the scores, keeping them centred near 0."""


@dataclass
class TrainRMConfig:
    stage: str = "train_rm"
    """Which stage this config runs (fixed)."""
    run: RunConfig = field(default_factory=RunConfig)
    """Output folder, seed, resume, precision, threads, logging."""
    reward_model: ModelConfig = field(default_factory=ModelConfig)
    """The reward model's own size group: `model@reward_model=tiny|small|base|sft|hf`."""
    engine: EngineConfig = field(default_factory=EngineConfig)
    """Multi-process engine: `engine=ddp|fsdp|zero2|zero3`."""
    peft: PeftConfig = field(default_factory=PeftConfig)
    """Full fine-tuning or LoRA adapters (the scalar head always trains): `peft=none|lora`."""
    data: DataConfig = field(default_factory=DataConfig)
    """Preference pairs {prompt, chosen, rejected}: `data=pairs` (the demo's) or your own."""
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=0.01, warmup_ratio=0.05)
    )
    """AdamW with a short warm-up; weight decay keeps the new scalar head small."""
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=1.0, eval_every=50, save_every=50)
    )
    """One epoch: a second one overfits the pairs (held-out accuracy falls)."""
    loss: RewardLossConfig = field(default_factory=RewardLossConfig)
    """Margin and centring of the Bradley-Terry loss."""
    calibration_size: int = 512
    """Training pairs whose chosen and rejected answers are scored after training, for the
    mean / std that `reward=stats_norm` normalises PPO rewards with."""


@dataclass
class RolloutConfig:
    batch_size: int = 32
    """Prompts sampled per PPO step (per process); each gets rollout.n responses."""
    max_new_tokens: int = 96
    """Longest response; one cut here counts as truncated (see `truncated`)."""
    temperature: float = 1.0
    """Logits are divided by this both when sampling and when scoring log-probs."""
    top_k: int = 0
    """0 = off. Any truncation makes samples unlikely under the scored policy: KL turns negative."""
    top_p: float = 1.0
    """1.0 = off. Like top_k, any other value makes sampled and scored distributions differ."""
    truncated: str = one_of("score", "penalty")
    """What a response cut at max_new_tokens without EOS earns. score: the reward model scores
    the unfinished text as it is (no EOS is added for it). penalty: that score minus
    `truncated_penalty`. The share truncated and the penalty paid are logged every step."""
    truncated_penalty: float = 1.0
    """Subtracted from a truncated response's raw score when truncated=penalty."""
    forward_batch_size: int = 32
    """Rows per no-grad forward pass when scoring rollouts."""
    n: int = 1
    """Responses sampled per prompt (a group): each process repeats each of its batch_size
    prompts n times, next to each other, in one generate call, so a step has batch_size x n
    episodes per process and a group never spans processes. grpo, dr_grpo and rloo need
    n >= 2."""


@dataclass
class RewardShapingConfig:
    normalize: str = one_of("none", "running", "stats")
    """none | running (running mean/std of the rollout scores) | stats (the reward model's
    saved statistics, from both answers of training pairs: close to, not equal to, the
    policy's own score distribution, which `rollout/score` shows)."""
    scale: float = 1.0
    """Multiplies the (normalised) score."""
    clip: float | None = None
    """Clip the shaped score to +-clip."""


@dataclass
class KLConfig:
    kind: str = one_of("fixed", "none", "adaptive")
    """none | fixed | adaptive (Ziegler et al. 2019 controller)."""
    coef: float = 0.05
    """beta: the fixed coefficient, or the adaptive controller's start."""
    target: float = 2.0
    """Adaptive: per-sequence KL (nats) the controller steers towards."""
    horizon: int = 500
    """Adaptive: episodes over which beta adapts; each step moves beta by at most
    20% x episodes / horizon. Ziegler et al.'s 10000 suits long runs; at the demo's 32 episodes
    a step it would move beta by under 1% in a whole 40-step run."""
    estimator: str | None = one_of(None, "k1", "k2", "k3")
    """k1 | k2 | k3, or null: k3 where KL is in the loss (grpo and dr_grpo by default), k1
    where it is in the reward. Per token from d = log pi - log pi_ref on tokens
    sampled from pi.
    In the reward (in_reward=true) each is a value: k1 = d is unbiased for KL(pi || pi_ref);
    k3 = exp(-d) - 1 + d is unbiased and never negative; k2 = d^2 / 2 is biased, low variance.
    In the loss (in_reward=false) what matters is the gradient: k2's is that of
    KL(pi || pi_ref), k3's that of the reverse KL(pi_ref || pi), and k1's is zero in
    expectation, so k1 in the loss is refused."""
    in_reward: bool | None = None
    """True: -beta*KL per token in the reward. False: beta*KL added to the policy loss (needs
    estimator k2 or k3). Null: where the advantage estimator puts it: in the loss for grpo and
    dr_grpo (as GRPO does), in the reward for gae, rloo and reinforce_pp."""


@dataclass
class PPOAlgoConfig:
    steps: int = 40
    """PPO iterations (rollout + update)."""
    epochs: int = 2
    """Passes over each rollout batch."""
    minibatch_size: int = 16
    """Rollout rows (episodes: prompts x rollout.n) per optimizer step of actor and critic. At
    or above the rows of a step (one minibatch per epoch) the first epoch's forwards also give
    the old log-probs and values: two fewer scoring passes per step, both graphs held while the
    batch is scored."""
    lr: float = 1e-4
    """Actor learning rate."""
    critic_lr: float = 3e-4
    """Critic learning rate (its own AdamW, so no value-loss coefficient is needed)."""
    weight_decay: float = 0.0
    """AdamW weight decay of actor and critic."""
    max_grad_norm: float = 1.0
    """Clip each model's gradient norm; 0 disables."""
    clip_eps: float = 0.2
    """Policy ratio clip: the ratio counts only within 1 +- clip_eps."""
    value_clip_eps: float = 0.2
    """Value clip around the rollout's values (0 disables)."""
    gamma: float = 1.0
    """Discount per token; 1: the score at the end counts fully for every token."""
    lam: float = 0.95
    """GAE lambda: 1 is Monte-Carlo returns, 0 one-step TD."""
    advantage_norm: bool = True
    """Whiten GAE's advantages over the valid tokens of the whole rollout batch. The
    critic-free estimators (advantage=...) scale by their own definition and ignore it."""
    entropy_coef: float = 0.0
    """Entropy bonus weight in the actor loss."""
    critic_warmup_steps: int = 0
    """First steps update only the critic, so a cold value head does not steer the actor
    (advantage=gae only; the critic_* settings mean nothing without a critic)."""
    critic_init: str = one_of("reward_model", "policy")
    """reward_model | policy: where the critic's backbone starts."""
    shared_backbone: bool = False
    """GAE's values from a value head on the actor's own last hidden states instead of a
    separate critic: one model, one optimizer and one forward + backward per minibatch (half
    the update's passes, one model fewer in memory). Off by default: policy and value losses
    then pull on one backbone, and the values do not start from the reward model's features.
    critic_init, critic_lr and critic_warmup_steps do not apply."""
    value_coef: float = 0.1
    """Weight of the value loss in the shared model's loss (ppo.shared_backbone only: a separate
    critic has its own Adam, which is invariant to its loss's scale)."""
    ptx_coef: float = 0.2
    """PPO-ptx: weight of the language-model loss on `ptx_data` added to the actor loss. On by
    default: in the demo's factor study it doubled the gain on unseen ads over plain PPO
    (+0.030 vs +0.014) and was the only setting to gain on new wording, for 7% more time."""
    ptx_batch_size: int = 8
    """Demonstrations per PPO-ptx loss."""


@dataclass
class AdvantageConfig:
    """How advantages are estimated: `advantage=gae|grpo|dr_grpo|rloo|reinforce_pp`."""

    estimator: str = one_of("gae", "grpo", "dr_grpo", "rloo", "reinforce_pp")
    """gae: a critic and generalised advantage estimation (the paper's PPO), whitened when
    ppo.advantage_norm. The others load no critic and ignore ppo.advantage_norm, each scaling
    as defined. With R_i the sequence return (score, minus beta * summed KL when KL is in the
    reward) and a group the rollout.n responses to one prompt: grpo (R_i - group mean) /
    (group std + group_std_eps), KL k3 in the loss; dr_grpo R_i - group mean, KL k3 in the
    loss, and the loss summed over tokens / (rows x rollout.max_new_tokens) instead of
    averaged per token; rloo R_i - mean of the other n - 1 of its group, KL in the reward;
    reinforce_pp (REINFORCE++) per-token KL in the reward, reward-to-go with ppo.gamma,
    whitened over the batch (rollout.n may be 1). A group whose returns are all equal gets
    advantage 0. grpo, dr_grpo and rloo need rollout.n >= 2. Except dr_grpo, the policy loss
    is the mean over the minibatch's tokens (not GRPO's mean of per-response means, which
    weighs a short response's tokens more)."""
    group_std_eps: float = 1e-6
    """grpo: added to the group's standard deviation before dividing by it."""


GROUP_ESTIMATORS = ("grpo", "dr_grpo", "rloo")
"""Advantage estimators whose baseline comes from the other responses to the same prompt."""


def needs_critic(estimator: str) -> bool:
    """Only GAE learns a value function; every other estimator runs without a critic."""
    return estimator == "gae"


def separate_critic(cfg: Any) -> bool:
    """Whether PPO loads a critic model of its own: GAE without ppo.shared_backbone."""
    return needs_critic(cfg.advantage.estimator) and not cfg.ppo.shared_backbone


def resolve_kl(kl: Any, estimator: str) -> KLConfig:
    """`kl` (a KLConfig or its DictConfig) with in_reward and estimator filled in where they
    are null, as the advantage estimator places KL: GRPO and Dr. GRPO put k3 in the loss
    (arXiv:2402.03300, eq. 4); GAE, RLOO and REINFORCE++ put k1 in the reward per token.
    A value the user set is kept."""
    in_loss = estimator in ("grpo", "dr_grpo")
    in_reward = (not in_loss) if kl.in_reward is None else bool(kl.in_reward)
    default_estimator = "k1" if in_reward else "k3"
    return KLConfig(
        kind=kl.kind,
        coef=kl.coef,
        target=kl.target,
        horizon=kl.horizon,
        estimator=kl.estimator or default_estimator,
        in_reward=in_reward,
    )


@dataclass
class PPOTrainConfig:
    eval_every: int = 10
    """Steps between held-out evaluations (greedy answers scored by reward model and gold)."""
    eval_size: int = 128
    """Held-out prompts per evaluation."""
    eval_sampled: bool = True
    """Also score one answer per held-out prompt sampled at the rollout temperature (the
    distribution PPO optimises), logged as eval/sampled_*."""
    save_every: int = 20
    """Steps between checkpoints (0: never mid-run)."""
    keep_last: int = 2
    """Checkpoints kept; older ones are deleted."""
    sample_every: int = 10
    """Steps between saving sample generations to samples.jsonl."""
    stop_after: int = 0
    """Stop (as if killed) after this many steps, leaving the checkpoint; for testing resume."""


def _demo_ptx_data() -> DataConfig:
    return DataConfig(
        sources=[
            SourceConfig(kind="demo", path="general_sft"),
            SourceConfig(kind="demo", path="sft", weight=0.5),
        ],
        eval_fraction=0.0,
    )


@dataclass
class PPOConfig:
    stage: str = "ppo"
    """Which stage this config runs (fixed)."""
    run: RunConfig = field(default_factory=RunConfig)
    """Output folder, seed, resume, precision, threads, logging."""
    policy: ModelConfig = field(default_factory=ModelConfig)
    """Actor start and frozen reference: `model@policy=sft` (this run's SFT model) by default."""
    reward_model: ModelConfig = field(default_factory=ModelConfig)
    """Frozen reward model: `model@reward_model=rm` (this run's train_rm model) by default."""
    engine: EngineConfig = field(default_factory=EngineConfig)
    """Multi-process engine: `engine=ddp|fsdp|zero2|zero3`."""
    peft: PeftConfig = field(default_factory=PeftConfig)
    """LoRA for actor and critic (`peft=lora`): the reference is the actor with its adapters
    off, so no second copy of the policy's weights is held."""
    data: DataConfig = field(default_factory=DataConfig)
    """PPO prompts; held-out prompts for evaluation come from each source's eval_path."""
    ptx_data: DataConfig = field(default_factory=_demo_ptx_data)
    """Demonstrations for the PPO-ptx loss (used when ppo.ptx_coef > 0): the demo's general
    skills and half of its domain demonstrations. With your own prompts, point this at your SFT
    / general data (or set ppo.ptx_coef=0)."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """How responses are sampled."""
    reward: RewardShapingConfig = field(default_factory=RewardShapingConfig)
    """Reward shaping: `reward=none|scale|clip|running_norm|stats_norm`."""
    kl: KLConfig = field(default_factory=KLConfig)
    """KL control: `kl=none|fixed|adaptive`."""
    ppo: PPOAlgoConfig = field(default_factory=PPOAlgoConfig)
    """The PPO update."""
    advantage: AdvantageConfig = field(default_factory=AdvantageConfig)
    """Advantage estimator: `advantage=gae|grpo|dr_grpo|rloo|reinforce_pp`."""
    train: PPOTrainConfig = field(default_factory=PPOTrainConfig)
    """Held-out checks, checkpoints and samples during PPO."""


GENERAL_TASKS: tuple[str, ...] = (
    "mmlu",
    "agieval",
    "bbh",
    "arc_easy",
    "arc_challenge",
    "hellaswag",
    "winogrande",
    "race_middle",
    "race_high",
    "gsm8k",
    "math",
    "boolq",
)
"""The paper's twelve general benchmarks."""

DOMAIN_TASKS: tuple[str, ...] = (
    "ad_moderation_valid",
    "ad_moderation_valid_sampled",
    "ad_moderation",
    "general_demo",
)
"""The embedded demo: in-domain answers and analyses, and closed-world general skills."""


@dataclass
class TaskConfig:
    format: str = MISSING
    """Reader and scorer: mmlu | agieval | bbh | arc | hellaswag | winogrande | race | gsm8k |
    math | boolq | judged (a chat task scored by `judge`) | ad_moderation | general_demo (the
    demo's judged tasks)."""
    path: str = MISSING
    """The evaluated split in the benchmark's public layout (file or folder). `fixture:REL` is a
    file bundled under icegrt_cli/eval/fixtures, `demo:PART` a part of the bundled demo data."""
    fewshot_path: str | None = None
    """Where k-shot examples come from (the train / dev split); None: other items of `path`."""
    benchmark: str | None = None
    """The real set `icegrt benchmarks fetch` provides for this task; while `path` is the
    bundled fixture, the fetched set (and its few-shot split) is read instead when present."""
    subtasks: list[str] = field(default_factory=list)
    """Subjects / subtask files to read from a folder (MMLU, AGIEval, BBH, MATH); empty: all."""
    num_fewshot: int = 0
    """Solved examples placed before each question, drawn from the item's own subject."""
    fewshot_sampler: str = one_of("random", "first_n")
    """random: drawn from `run.seed` per item | first_n: the pool's first k (lm-eval's MMLU)."""
    limit: int | None = None
    """Evaluate only the first N items (overrides the global `limit`)."""
    metrics: list[str] = field(default_factory=list)
    """Metrics to report, in order; empty: every metric the format computes."""
    until: list[str] = field(default_factory=list)
    """Generation stops at the first of these strings (and always at EOS)."""
    max_new_tokens: int | None = None
    """Generation budget; None: the stage's `max_new_tokens`."""
    temperature: float = 0.0
    """0: greedy. Above 0: one answer per item sampled at this temperature from `run.seed`,
    i.e. the policy's distribution, which is what RLHF optimises."""
    judge: str | None = None
    """Judged formats: import string `pkg.module:function` of the judge, (response, record) ->
    Judgement (icegrt_cli.judges), reported as `score` (judged), `gold` (ad_moderation) or
    `acc` (general_demo) plus its named parts. None: the demo's judges for the demo formats."""


@dataclass
class EvalModelConfig(ModelConfig):
    paths: list[str] = field(default_factory=list)
    """Checkpoints to compare, the first being the baseline for deltas. Empty: `name_or_path`,
    else the run's latest model (`<run>/ppo/model`, else `<run>/sft/model`)."""


@dataclass
class EvalConfig:
    stage: str = "eval"
    """Which stage this config runs (fixed)."""
    run: RunConfig = field(default_factory=RunConfig)
    """Output folder, seed (of sampled tasks), threads."""
    model: EvalModelConfig = field(default_factory=EvalModelConfig)
    """Which checkpoints, and the loading settings (dtype, trust_remote_code, ...) for all."""
    reward_model: str | None = None
    """A reward-model folder; adds its mean score on the chat tasks' answers."""
    tasks: list[str] = field(default_factory=lambda: [*DOMAIN_TASKS, *GENERAL_TASKS])
    """Tasks to run, in table order; each needs an entry under `task`."""
    task: dict[str, TaskConfig] = field(default_factory=dict)
    """Every known task's settings, `conf/task/<name>.yaml`, placed by the eval stage."""
    limit: int | None = None
    """Cap on items per task (a task's own `limit` wins); None: all."""
    subsample: bool = False
    """Under a limit, a random draw of the items from `run.seed` instead of the first ones."""
    batch_size: int = 32
    """Sequences per forward pass (log-likelihood continuations or generations)."""
    max_new_tokens: int = 96
    """Generation budget of generation tasks without their own."""
    max_length: int | None = None
    """Longest input in tokens; None: the model's max_position_embeddings (else 2048)."""
    save_predictions: bool = True
    """Write every item's prompt, prediction and per-item scores to predictions/<model>/."""


@dataclass
class PipelineConfig:
    stage: str = "pipeline"
    """Which stage this config runs (fixed)."""
    run: RunConfig = field(default_factory=RunConfig)
    """Shared by every stage; stages write to <run folder>/<stage>/."""
    stages: list[str] = field(default_factory=lambda: ["sft", "train_rm", "ppo", "eval"])
    """Stages to run, in order; a stage whose folder holds a summary.json is skipped."""
    force: list[str] = field(default_factory=list)
    """Stages to rerun even when complete (e.g. [ppo,eval])."""
    reuse_from: str | None = None
    """Another run folder whose finished stages are linked in instead of rerun (share one SFT
    and reward model across a sweep of PPO settings)."""
    sft: SFTConfig = field(default_factory=SFTConfig)
    """The sft stage's settings (`sft.optim.lr=...`)."""
    train_rm: TrainRMConfig = field(default_factory=TrainRMConfig)
    """The train-rm stage's settings (`train_rm.reward_model=small`)."""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """The ppo stage's settings (`ppo.kl=adaptive`)."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """The eval stage's settings (`eval.tasks=[...]`)."""
