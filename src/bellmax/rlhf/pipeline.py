"""The whole RLHF workflow with one preset: data -> pretrain -> sft -> compare -> reward -> ppo -> evaluate.

    RUN_DIR/
      data/       corpus, demonstrations, prompts, held-out prompts (JSONL) and the tokenizer
      pretrain/   GPT-2 from scratch on the corpus            the model (save_pretrained), report.json
      sft/        fine-tuned on the demonstrations            the model, report.json
      compare/    K SFT samples per prompt, ranked            rankings.jsonl, comparisons.jsonl, report.json
      reward/     reward model from the rankings              the model, report.json
      ppo/        PPO(-ptx) with the KL penalty               the model, metrics.jsonl, report.json
      ppo_no_kl/  the same without the KL penalty             (over-optimization comparison)
      rloo/ grpo/ reinforce_pp/ dpo/   with --also NAME ...: the other estimators, from the same SFT (and
                  reward) model, judged beside PPO             model/, metrics.jsonl, report.json
      evaluate/   win rates, KL, curves                       win_rates.png, training_curves.png, report.json
      pipeline_config.json  the run's config, written first: `bellmax rlhf run --resume RUN_DIR` continues with it
      report.json the summary: win rates, reward-model accuracy, KL to SFT, seconds

A stage that trains a model is a Hugging Face model directory: config.json, model.safetensors and
the tokenizer sit next to its report.json, metrics.jsonl and run_config.json (the stage's own
config), so `AutoModelForCausalLM.from_pretrained(RUN_DIR / "sft")` loads it. Each stage reads only
the directories before it, so any stage can be rerun alone with `bellmax rlhf STAGE` (see
`bellmax rlhf --help`). While a long stage trains, its directory also holds its checkpoints
(`rlhf/checkpoints.py`), deleted when it finishes.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from bellmax.config import nested_dataclass
from bellmax.errors import unknown_name
from bellmax.rlhf import data
from bellmax.rlhf.data import DataConfig
from bellmax.rlhf.dpo import DPOConfig
from bellmax.rlhf.evaluate import EvaluateConfig
from bellmax.rlhf.group import Algo, RLConfig
from bellmax.rlhf.ppo import RLHFPPOConfig
from bellmax.rlhf.reward import CompareConfig, RewardConfig
from bellmax.rlhf.rs import RSConfig
from bellmax.rlhf.sft import PretrainConfig, SFTConfig

STAGES = ("data", "pretrain", "sft", "compare", "reward", "ppo", "rl", "dpo", "rs", "evaluate")
ALSO = ("rloo", "grpo", "reinforce_pp", "dpo", "rs")  # what `--also` may add beside PPO


@dataclass
class PipelineConfig:
    """All stages of `bellmax rlhf run`; `seed` is copied into every stage."""

    seed: int = 0
    """Seed of every stage: same seed, same numbers."""
    torch_threads: int | None = None
    """Threads torch may use in every stage (None: each stage's own torch_threads, 1 unless set). More threads
    than idle cores makes it much slower; on an otherwise idle machine, its core count is the fastest."""
    no_kl_baseline: bool = True
    """Also run PPO with kl_coef = 0 to show over-optimization without the KL penalty."""
    no_kl_iterations: int | None = None
    """Iterations of that run (None: the ppo stage's). Without the penalty the gold score peaks within about ten
    iterations and then falls while the reward-model score keeps rising, so a shorter run shows it too."""
    also: tuple[str, ...] = ()
    """Also train these from the same SFT (and reward) model and judge them beside PPO: any of rloo, grpo,
    reinforce_pp (the rl stage's settings, with that algo), dpo and rs (rejection sampling: the reward model's
    best of N samples from SFT, then fine-tuning on them)."""
    data: DataConfig = field(default_factory=DataConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    ppo: RLHFPPOConfig = field(default_factory=RLHFPPOConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    rs: RSConfig = field(default_factory=RSConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    def stage_configs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in STAGES}

    def with_seed(self) -> PipelineConfig:
        """A copy whose stages all use `seed` (and `torch_threads`, where set, in every stage that runs torch)."""
        def shared(stage: Any) -> dict[str, Any]:
            threads = self.torch_threads is not None and hasattr(stage, "torch_threads")
            return {"seed": self.seed, **({"torch_threads": self.torch_threads} if threads else {})}

        return dataclasses.replace(self, **{name: dataclasses.replace(stage, **shared(stage))
                                            for name, stage in self.stage_configs().items()})

    def validate(self) -> None:
        from bellmax.config import require

        require(self.seed >= 0, "seed", self.seed, "a non-negative integer")
        require(self.no_kl_iterations is None or self.no_kl_iterations >= 1, "no_kl_iterations",
                self.no_kl_iterations, "at least 1 (or None: the ppo stage's iterations)")
        require(self.torch_threads is None or self.torch_threads >= 1, "torch_threads", self.torch_threads,
                "at least 1 (or None: each stage's own)")
        require(all(name in ALSO for name in self.also) and len(set(self.also)) == len(self.also), "also",
                self.also, f"distinct names among {', '.join(ALSO)}")
        for stage in self.stage_configs().values():
            stage.validate()


# Presets: plain data, each with where its numbers came from.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "provenance": "our own tuning on this repo's 2-core CPU box, seeds 0 and 3-6; about 250-270 s a seed "
                      "(docs/BENCHMARKS.md, RLHF section)",
        "config": {
            "torch_threads": 2,  # this box's 2 cores: 1.3-1.6x faster than 1 on an idle machine
            "no_kl_iterations": 30,
            # 2,000 held-out prompts: a win rate near 0.7 then has a standard error of about 0.01
            "data": {"good_fraction": 0.05, "max_items": 4, "sloppy_demo_fraction": 0.7, "eval_prompts": 2000},
            "pretrain": {"steps": 1000, "batch_size": 64, "learning_rate": 1e-3,
                         "model": {"n_layer": 4, "n_embd": 128, "n_head": 4, "n_positions": 48}},
            "sft": {"steps": 300, "batch_size": 32, "learning_rate": 3e-4},
            "compare": {"prompts": 3000, "k": 4, "k_extra": 2},
            "reward": {"epochs": 3, "prompts_per_batch": 16, "learning_rate": 5e-4, "log_every": 100},
            "ppo": {"iterations": 80, "batch_size": 64, "minibatch_size": 32, "n_epochs": 2, "learning_rate": 5e-5,
                    "kl_coef": 0.2, "adaptive_kl": True, "target_kl": 1.5, "kl_horizon": 1000,
                    # the KL anchor: SFT sharpened to T = 0.5, where the policy starts (start_at_anchor, the default)
                    # (docs/benchmarks/rlhf.md#temperature-and-the-kl-anchor)
                    "ref_temperature": 0.5},
            "rl": {"iterations": 80, "prompts_per_batch": 16, "group_size": 4, "minibatch_size": 32, "n_epochs": 2,
                   "learning_rate": 5e-5, "kl_coef": 0.05, "ref_temperature": 0.5},
            "dpo": {"epochs": 1, "prompts_per_batch": 16, "beta": 0.1, "learning_rate": 5e-5},
            "rs": {"samples": 8, "prompts": 2000, "steps": 400, "batch_size": 32, "learning_rate": 3e-4,
                   "ref_coef": 0.1},
            "evaluate": {"prompts": 2000, "sharpened_sft": 0.5},
        },
    },
    "small": {
        "provenance": "the tiny preset scaled up once (wider and deeper GPT-2, lists of up to 6 items, more data and "
                      "iterations), not tuned further; 18 minutes on this repo's 2-core CPU box, seed 0",
        "config": {
            "torch_threads": 2,
            "no_kl_iterations": 30,
            "data": {"good_fraction": 0.05, "max_items": 6, "sloppy_demo_fraction": 0.7, "sft_size": 1500,
                     "rl_prompts": 6000, "eval_prompts": 2000},
            "pretrain": {"steps": 1500, "batch_size": 64, "learning_rate": 1e-3,
                         "model": {"n_layer": 6, "n_embd": 192, "n_head": 6, "n_positions": 64}},
            "sft": {"steps": 400, "batch_size": 32, "learning_rate": 3e-4},
            "compare": {"prompts": 4000, "k": 4, "k_extra": 2, "max_new_tokens": 20},
            "reward": {"epochs": 3, "prompts_per_batch": 16, "learning_rate": 3e-4, "log_every": 100},
            "ppo": {"iterations": 100, "batch_size": 64, "minibatch_size": 32, "n_epochs": 4, "learning_rate": 3e-5,
                    "kl_coef": 0.2, "adaptive_kl": True, "target_kl": 1.5, "kl_horizon": 1000, "max_new_tokens": 20,
                    # measured with the policy starting at SFT itself (docs/benchmarks/rlhf.md#a-larger-preset-small)
                    "ref_temperature": 0.5, "start_at_anchor": False},
            "rl": {"iterations": 100, "prompts_per_batch": 16, "group_size": 4, "minibatch_size": 32, "n_epochs": 2,
                   "learning_rate": 3e-5, "kl_coef": 0.05, "max_new_tokens": 20, "ref_temperature": 0.5,
                   "start_at_anchor": False},
            "dpo": {"epochs": 1, "prompts_per_batch": 16, "beta": 0.1, "learning_rate": 3e-5, "max_new_tokens": 20},
            "rs": {"samples": 8, "prompts": 3000, "steps": 500, "batch_size": 32, "learning_rate": 3e-4,
                   "max_new_tokens": 20},
            "evaluate": {"prompts": 2000, "max_new_tokens": 20, "sharpened_sft": 0.5},
        },
    },
    "test": {
        "provenance": "smallest settings that still exercise every stage (the end-to-end unit test)",
        "config": {
            "no_kl_iterations": 3,
            "data": {"corpus_size": 2000, "sft_size": 200, "rl_prompts": 200, "eval_prompts": 64, "max_items": 4},
            "pretrain": {"steps": 150, "batch_size": 32, "learning_rate": 2e-3,
                         "model": {"n_layer": 2, "n_embd": 32, "n_head": 2, "n_positions": 32}},
            "sft": {"steps": 60, "batch_size": 32, "learning_rate": 1e-3, "eval_prompts": 0},
            "compare": {"prompts": 96, "k": 4, "max_new_tokens": 10},
            "reward": {"epochs": 2, "prompts_per_batch": 8, "learning_rate": 1e-3, "log_every": 5},
            "ppo": {"iterations": 12, "batch_size": 32, "minibatch_size": 16, "n_epochs": 2, "learning_rate": 3e-4,
                    "max_new_tokens": 10, "ptx_coef": 0.1, "ptx_batch_size": 8},
            "rl": {"iterations": 6, "prompts_per_batch": 8, "group_size": 4, "minibatch_size": 16, "n_epochs": 1,
                   "learning_rate": 3e-4, "max_new_tokens": 10},
            "dpo": {"prompts_per_batch": 8, "learning_rate": 3e-4, "log_every": 4, "eval_prompts": 16,
                    "max_new_tokens": 10},
            "rs": {"samples": 4, "prompts": 48, "steps": 12, "batch_size": 16, "learning_rate": 1e-3, "log_every": 4,
                   "eval_prompts": 16, "max_new_tokens": 10},
            "evaluate": {"prompts": 64, "max_new_tokens": 10},
        },
    },
}


def preset(name: str) -> PipelineConfig:
    if name not in PRESETS:
        raise unknown_name("RLHF preset", name, list(PRESETS))
    return nested_dataclass(PipelineConfig, PRESETS[name]["config"])


PIPELINE_CONFIG_FILE = "pipeline_config.json"  # RUN_DIR's config, written first: what --resume continues with


def read_pipeline_config(run_dir: Path) -> PipelineConfig:
    """The config a pipeline in run_dir was started with (for `bellmax rlhf run --resume`)."""
    import json

    from bellmax.errors import BellmaxError

    path = Path(run_dir) / PIPELINE_CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise BellmaxError(f"{run_dir} does not exist; start a pipeline there with `bellmax rlhf run --run-dir "
                           f"{run_dir}`")
    if not path.is_file():
        raise BellmaxError(f"{run_dir} holds no RLHF pipeline to resume (no {PIPELINE_CONFIG_FILE}); start one with "
                           f"`bellmax rlhf run --run-dir DIR`, or resume a single stage with `bellmax rlhf STAGE "
                           "--resume DIR`")
    try:
        return nested_dataclass(PipelineConfig, json.loads(path.read_text())["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BellmaxError(f"{path} is damaged ({type(exc).__name__}: {exc}); it cannot be resumed") from None


def run_pipeline(config: PipelineConfig, run_dir: Path, log=print, resume: bool = False) -> dict[str, Any]:
    """Every stage in order; returns (and writes to run_dir/report.json) the summary. The config is
    written to run_dir/pipeline_config.json before the first stage. resume: continue the pipeline in
    run_dir (config must be the one it saved, `read_pipeline_config`): stages with a report.json
    are done and only read back, the stage that was running continues from its newest checkpoint
    (or starts again if it had none), and the stages after it run."""
    import json

    from bellmax import __version__
    from bellmax.core.run import atomic_write_text, lock_run_dir, make_run_dir
    from bellmax.errors import BellmaxError

    config.with_seed().validate()
    run_dir = Path(run_dir)
    if resume and read_pipeline_config(run_dir) != config:
        raise BellmaxError(f"{run_dir} was started with another config: resume it with the one in "
                           f"{run_dir / PIPELINE_CONFIG_FILE} (`bellmax rlhf run --resume {run_dir}`)")
    if not resume and (run_dir / PIPELINE_CONFIG_FILE).exists():
        raise BellmaxError(f"{run_dir} holds an RLHF pipeline already: continue it with `bellmax rlhf run --resume "
                           f"{run_dir}`, or pick another --run-dir")
    make_run_dir(run_dir)
    lock = lock_run_dir(run_dir)  # one process at a time runs the pipeline in run_dir
    try:
        if not resume:
            atomic_write_text(run_dir / PIPELINE_CONFIG_FILE, json.dumps(
                {"config": data.config_dict(config), "bellmax_version": __version__}, indent=2) + "\n")
        started = time.perf_counter()
        stages = StageRunner(run_dir, log, resume)
        report = run_stages(config.with_seed(), run_dir, stages, log)
        # resumed: the stages' own seconds, each counting its earlier part (this process ran only the rest)
        report["seconds"] = sum(stages.seconds.values()) if resume else time.perf_counter() - started
        data.write_report(run_dir, report)
    finally:
        if lock is not None:
            lock.close()
    return report


class StageRunner:
    """Runs one stage of the pipeline and times it; on a resume, reads back a stage that finished
    (its report.json) and continues the one that did not from its checkpoint."""

    def __init__(self, run_dir: Path, log, resume: bool):
        self.run_dir, self.log, self.resume = run_dir, log, resume
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, function, *args, checkpoints: bool = False) -> dict[str, Any]:
        """function(*args) for stage `name` (its directory run_dir/name); checkpoints: it takes `resume`."""
        import json

        from bellmax.core.run import has_checkpoint, step_checkpoints
        from bellmax.errors import BellmaxError, TrainingInterrupted

        directory = self.run_dir / name
        if self.resume and (directory / "report.json").exists():
            try:
                report = json.loads((directory / "report.json").read_text())
            except ValueError:
                raise BellmaxError(f"{directory / 'report.json'} is damaged; delete {directory} to run that stage "
                                   "again") from None
            if report.get("seconds") is not None:
                self.seconds[name] = report["seconds"]
            self.log(f"{name}: finished before -> {directory}")
            return report
        if self.resume and checkpoints and has_checkpoint(directory):
            steps = step_checkpoints(directory)
            self.log(f"{name}: resuming from its checkpoint" + (f" at step {steps[0][0]}" if steps else ""))
        tick = time.perf_counter()
        try:
            report = function(*args, resume=self.resume) if checkpoints else function(*args)
        except TrainingInterrupted as stopped:  # the hint is the pipeline's, not the stage's
            raise TrainingInterrupted(stopped.signal_name, stopped.algo, stopped.step, self.run_dir,
                                      command="bellmax rlhf run") from None
        self.seconds[name] = time.perf_counter() - tick
        if self.resume and report.get("seconds") is not None:  # a resumed stage's time counts its earlier part
            self.seconds[name] = report["seconds"]
        self.log(f"{name}: done in {time.perf_counter() - tick:.1f} s -> {directory}")
        return report


def run_stages(config: PipelineConfig, run_dir: Path, stage: StageRunner, log) -> dict[str, Any]:
    """The stages in order, each through `stage`; returns the summary (without its seconds)."""
    from bellmax.rlhf.dpo import run_dpo
    from bellmax.rlhf.evaluate import run_evaluate
    from bellmax.rlhf.group import run_rl
    from bellmax.rlhf.ppo import run_ppo
    from bellmax.rlhf.reward import run_compare, run_reward
    from bellmax.rlhf.rs import run_rs
    from bellmax.rlhf.sft import run_pretrain, run_sft

    d = run_dir / "data"
    stage("data", data.run_data, config.data, d)
    stage("pretrain", run_pretrain, config.pretrain, d, run_dir / "pretrain", checkpoints=True)
    sft = stage("sft", run_sft, config.sft, run_dir / "pretrain", d, run_dir / "sft", checkpoints=True)
    stage("compare", run_compare, config.compare, run_dir / "sft", d, run_dir / "compare", run_dir / "pretrain")
    reward = stage("reward", run_reward, config.reward, run_dir / "sft", run_dir / "compare", run_dir / "reward",
                   checkpoints=True)
    ppo = stage("ppo", run_ppo, config.ppo, run_dir / "sft", run_dir / "reward", d, run_dir / "ppo", log,
                checkpoints=True)
    policies = {"pretrained": run_dir / "pretrain", "rl": run_dir / "ppo"}
    ppo_runs = {"rl": run_dir / "ppo"}
    if config.no_kl_baseline:
        no_kl = dataclasses.replace(config.ppo, kl_coef=0.0, adaptive_kl=False,
                                    iterations=config.no_kl_iterations or config.ppo.iterations)
        stage("ppo_no_kl", run_ppo, no_kl, run_dir / "sft", run_dir / "reward", d, run_dir / "ppo_no_kl", log,
              checkpoints=True)
        policies["rl_no_kl"] = ppo_runs["rl_no_kl"] = run_dir / "ppo_no_kl"
    for name in config.also:
        if name == "dpo":
            stage(name, run_dpo, config.dpo, run_dir / "sft", run_dir / "compare", run_dir / name, log,
                  checkpoints=True)
        elif name == "rs":
            stage(name, run_rs, config.rs, run_dir / "sft", run_dir / "reward", d, run_dir / name, log,
                  checkpoints=True)
        else:
            rl = dataclasses.replace(config.rl, algo=cast(Algo, name))
            stage(name, run_rl, rl, run_dir / "sft", run_dir / "reward", d, run_dir / name, log, checkpoints=True)
        policies[name] = run_dir / name
    evaluation = stage("evaluate", run_evaluate, config.evaluate, run_dir / "sft", policies, d, run_dir / "evaluate",
                       ppo_runs, log)
    return {
        "win_rates": evaluation["win_rates"],
        "win_rate_stderr": evaluation["win_rate_stderr"],
        "reward_model_accuracy": reward["held_out_accuracy"],
        "reward_model_margin": reward["held_out_margin"],
        "reward_model_gold_accuracy": reward["gold_accuracy"],
        "kl_to_sft": evaluation["kl_to_sft"],
        "gold_scores": {name: p["gold_score"] for name, p in evaluation["policies"].items()},
        "response_lengths": {name: p["response_length"] for name, p in evaluation["policies"].items()},
        "sft_gold_score_at_train_end": sft.get("gold_score"),
        "ppo": {"first": ppo["first"], "last": ppo["last"]},
        "figures": evaluation["figures"],
        "seed": config.seed,
        "stage_seconds": stage.seconds,
    }
