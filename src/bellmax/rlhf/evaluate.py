"""Evaluation by the hidden gold labeler: win rates, KL to SFT, over-optimization and length curves.

Every policy answers the same held-out prompts by sampling (temperature 1, the distribution PPO
optimized); the gold labeler scores each answer, and a policy's win rate against SFT is the share of
prompts on which its answer scores higher than SFT's, ties counted as half. "SFT vs SFT" compares
two independent SFT samples (about 50% by construction: the reference bar of the lecture's figure).
With `sharpened_sft`, SFT itself sampled at a lower temperature is judged too
("sft_sharpened_vs_sft", its KL to SFT at the evaluation temperature): what sharpening alone buys.
Each win rate comes with its standard error over the prompts (`win_rate_stderr`; about 0.01 at 2,000
prompts near 0.7): the noise of the judgement, not that of training another model from another seed.

KL to SFT is the Monte Carlo estimate E_{y ~ pi}[ sum_t log pi(y_t | x, y_<t) - log pi_SFT(y_t | x, y_<t) ]
on the policy's own samples, in nats per response (the same k1 estimator PPO penalizes); at a
sampling temperature T other than 1, pi and pi_SFT are both softmax(logits / T), the distributions
sampled.

From the PPO runs' metrics: the reward model's score (the proxy PPO maximizes) against the gold
score over training, the over-optimization curve, and the response length over training, the
length form of reward hacking; with the KL penalty and without it.
"""

from __future__ import annotations

import math
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bellmax.config import require
from bellmax.core.run import METRICS_JSONL, line_list, read_metrics, skipped_lines_message
from bellmax.errors import BellmaxError
from bellmax.rlhf import data, task
from bellmax.rlhf.model import (
    decode_responses,
    encode_prompts,
    generate,
    load_causal_lm,
    response_logits,
    setup_torch,
    token_log_probs,
)


@dataclass
class EvaluateConfig:
    """Evaluation on held-out prompts."""

    seed: int = 0
    """Seed of the sampling."""
    prompts: int = 500
    """Held-out prompts to answer (at most the number in eval_prompts.jsonl)."""
    temperature: float = 1.0
    """Sampling temperature of every policy."""
    sharpened_sft: float | None = None
    """Also judge SFT itself sampled at temperature x this factor (e.g. 0.5, the RL stages' ref_temperature),
    as "sft_sharpened": what sharpening SFT buys with no training at all; None: not judged."""
    max_new_tokens: int = 16
    """Longest response."""
    batch_size: int = 128
    """Prompts sampled together."""
    torch_threads: int = 1
    """Threads torch may use (more than the idle cores makes it much slower)."""

    def validate(self) -> None:
        require(self.seed >= 0, "seed", self.seed, "a non-negative integer")
        require(self.prompts >= 1, "prompts", self.prompts, "at least 1")
        require(self.temperature > 0, "temperature", self.temperature, "positive")
        require(self.sharpened_sft is None or (math.isfinite(self.sharpened_sft) and self.sharpened_sft > 0),
                "sharpened_sft", self.sharpened_sft, "a positive factor of the temperature (e.g. 0.5) or None")
        require(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, "at least 1")
        require(self.batch_size >= 1, "batch_size", self.batch_size, "at least 1")
        require(self.torch_threads >= 1, "torch_threads", self.torch_threads, "at least 1")


@torch.no_grad()
def sample_answers(model, tokenizer, prompts: list[str], seed: int, temperature: float = 1.0,
                   max_new_tokens: int = 16, batch_size: int = 128, reference=None,
                   reference_temperature: float | None = None) -> dict[str, list]:
    """Sampled responses (text, EOS kept), their lengths and, with a reference, each one's KL estimate to
    the reference at `reference_temperature` (None: at the sampling temperature)."""
    generator = torch.Generator().manual_seed(seed)
    texts, lengths, kls = [], [], []
    for start in range(0, len(prompts), batch_size):
        query, query_mask = encode_prompts(tokenizer, prompts[start: start + batch_size])
        response, response_mask = generate(model, query, query_mask, max_new_tokens, tokenizer.eos_token_id,
                                           tokenizer.pad_token_id, generator, temperature)
        texts += decode_responses(tokenizer, response, response_mask)
        lengths += response_mask.sum(1).tolist()
        if reference is not None:
            # the policy at the sampling temperature (the distribution the answers came from), the reference
            # at the same one unless told otherwise
            logits = response_logits(model, query, query_mask, response, response_mask)
            log_probs = token_log_probs(logits, response, temperature)
            ref_logits = response_logits(reference, query, query_mask, response, response_mask)
            ref_log_probs = token_log_probs(ref_logits, response, reference_temperature or temperature)
            kls += ((log_probs - ref_log_probs) * response_mask).sum(1).tolist()
    return {"texts": texts, "lengths": lengths, "kl": kls}


def gold_scores(prompts: list[str], responses: list[str]) -> list[float]:
    try:
        return [task.gold_score(p, r) for p, r in zip(prompts, responses)]
    except ValueError as exc:
        raise BellmaxError(f"the gold labeler only judges the synthetic task's prompts ({exc})") from None


def mean_gold_score(model, tokenizer, prompts: list[str], seed: int = 0, max_new_tokens: int = 16) -> float | None:
    """Mean gold score of sampled answers; None if the prompts are not the synthetic task's."""
    answers = sample_answers(model, tokenizer, prompts, seed, max_new_tokens=max_new_tokens)
    try:
        return sum(gold_scores(prompts, answers["texts"])) / len(prompts)
    except BellmaxError:
        return None


# -- figures ------------------------------------------------------------------------------------
def plot_win_rates(win_rates: dict[str, float], output: Path, stderr: dict[str, float | None] | None = None) -> Path:
    """The lecture's "Win rate Pre-trained vs SFT vs RL" bar chart; with `stderr`, each bar's 95% interval
    over the prompts (+- 1.96 standard errors)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bellmax.plotting import save_figure

    names = list(win_rates)
    fig, ax = plt.subplots(figsize=(max(5.5, 0.9 * len(names)), 3.6))
    errors = [196 * ((stderr or {}).get(n) or 0.0) for n in names]
    # the first bar (pre-trained) grey, then a colour of its own for each of up to ten more
    tab10 = plt.get_cmap("tab10")
    palette = ["#999999"] + [tab10(i) for i in range(10)]
    bars = ax.bar(names, [100 * win_rates[n] for n in names], yerr=errors if any(errors) else None, capsize=3,
                  color=[palette[i % len(palette)] for i in range(len(names))])
    if len(names) > 5:  # long labels side by side would overlap
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    for bar, name, error in zip(bars, names, errors):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 1 + error, f"{100 * win_rates[name]:.0f}%",
                ha="center")
    ax.axhline(50, color="black", linewidth=0.8, linestyle="--")
    ax.set_ylim(0, 105)
    ax.set_ylabel("win rate against SFT (%)")
    ax.set_title("Win rate Pre-trained vs SFT vs RL (gold labeler)")
    return save_figure(fig, output)


def plot_training_curves(curves: dict[str, list[dict[str, Any]]], output: Path) -> Path:
    """Proxy (reward model) vs gold score and response length over PPO iterations, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bellmax.plotting import save_figure

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = (("objective/scores", "reward-model score (proxy, normalized)"), ("gold/score", "gold score (hidden)"),
              ("rollout/response_length", "response length (tokens)"))
    for ax, (key, label) in zip(axes, panels):
        for name, rows in curves.items():
            points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points), label=name)
        ax.set_xlabel("PPO iteration")
        ax.set_ylabel(label)
    axes[0].legend()
    fig.suptitle("Over-optimization: proxy reward vs gold reward, and length, during PPO")
    return save_figure(fig, output)


# -- the stage ----------------------------------------------------------------------------------
SEED_OFFSETS = {"pretrained": 2, "rl": 3, "rl_no_kl": 4}  # 0 and 1: the two SFT samples


def policy_seed_offset(name: str) -> int:
    """Each policy's sampling seed depends on its name only, so a policy's answers (and its win
    rate) are the same whichever other policies are evaluated with it."""
    return SEED_OFFSETS.get(name, 5 + zlib.crc32(name.encode()) % 10_000)


# objective/kl is the KL penalized (to the anchor), objective/kl_sft the KL to SFT itself (absent in older runs)
CURVE_KEYS = ("objective/scores", "gold/score", "objective/kl", "objective/kl_sft", "rollout/response_length")


def is_curve_row(row: dict[str, Any]) -> bool:
    """A PPO metrics row the curves can use: an integer step, and numbers (or null) under CURVE_KEYS."""
    def number_or_null(value: Any) -> bool:
        return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))

    step = row.get("step")
    return isinstance(step, int) and not isinstance(step, bool) and all(number_or_null(row.get(k)) for k in CURVE_KEYS)


def read_ppo_curves(ppo_runs: dict[str, Path], log: Callable[[str], None]) -> dict[str, list[dict[str, Any]]]:
    """Each PPO run's metrics rows. As everywhere metrics are read back, a damaged line is skipped and
    reported (through `log`), never the rows around it; a run with no usable row is a BellmaxError."""
    curves = {}
    for name, ppo_dir in ppo_runs.items():
        damaged: list[int] = []
        rows = read_metrics(Path(ppo_dir), damaged, keep=is_curve_row)
        path = Path(ppo_dir) / METRICS_JSONL
        if not rows:
            lines = f" (damaged lines: {line_list(damaged)})" if damaged else ""
            raise BellmaxError(f"--ppo-run {ppo_dir}: {path} holds no usable PPO metrics{lines}; give the directory "
                               "of a finished `bellmax rlhf ppo` run")
        if damaged:
            log(skipped_lines_message(path, damaged))
        curves[name] = rows
    return curves


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def run_evaluate(config: EvaluateConfig, sft_path: Path, policies: dict[str, Path], data_dir: Path, run_dir: Path,
                 ppo_runs: dict[str, Path] | None = None, log: Callable[[str], None] = _stderr) -> dict[str, Any]:
    """Stage 5: win rates against SFT (gold labeler) of `policies` (name -> model dir, e.g. pretrained,
    rl), KL of each to SFT, and the training curves of `ppo_runs` (name -> PPO run dir). Every input
    is read and checked before the first sample."""
    config.validate()
    started = time.perf_counter()
    records = data.load(data_dir, data.EVAL_PROMPTS)
    prompts = records.column("prompt")[: config.prompts]
    curves = read_ppo_curves(ppo_runs or {}, log)
    setup_torch(config.seed, config.torch_threads)
    sft, tokenizer = load_causal_lm(sft_path, "--sft")
    models = {name: load_causal_lm(path, f"--{name.replace('_', '-')}")[0].eval() for name, path in policies.items()}
    data.check_prompts_fit(records, tokenizer, [sft, *models.values()], config.max_new_tokens)

    def answers(model, seed_offset: int, reference=None, temperature: float = config.temperature) -> dict[str, list]:
        # the KL is always to the reference at the evaluation temperature
        return sample_answers(model, tokenizer, prompts, config.seed + seed_offset, temperature,
                              config.max_new_tokens, config.batch_size, reference, config.temperature)

    def judged(name: str, model, temperature: float = config.temperature) -> dict[str, Any]:
        sampled = answers(model, policy_seed_offset(name), sft, temperature)
        return {"gold": gold_scores(prompts, sampled["texts"]), "lengths": sampled["lengths"], "kl": sampled["kl"],
                "example": sampled["texts"][:3]}

    baseline = answers(sft, 0)
    baseline_gold = gold_scores(prompts, baseline["texts"])
    second = answers(sft, 1)  # an independent SFT sample: the 50% reference bar
    results: dict[str, dict[str, Any]] = {"sft": {"gold": gold_scores(prompts, second["texts"]),
                                                  "lengths": second["lengths"], "kl": [0.0]}}
    for name, model in models.items():
        results[name] = judged(name, model)
    sharpened = None if config.sharpened_sft is None else config.temperature * config.sharpened_sft
    if sharpened is not None:  # SFT at a lower temperature, its KL to SFT at the evaluation temperature
        results["sft_sharpened"] = judged("sft_sharpened", sft, sharpened)
    pairs = {f"{name}_vs_sft": (r["gold"], baseline_gold) for name, r in results.items()}
    if "pretrained" in results:
        pairs["sft_vs_pretrained"] = (baseline_gold, results["pretrained"]["gold"])
    win_rates = {key: task.win_rate(*scores) for key, scores in pairs.items()}
    win_rate_stderr = {key: task.win_rate_stderr(*scores) for key, scores in pairs.items()}
    policies_report = {
        name: {"gold_score": sum(r["gold"]) / len(r["gold"]),
               "exact": sum(g == 1.0 for g in r["gold"]) / len(r["gold"]),
               "response_length": sum(r["lengths"]) / len(r["lengths"]),
               "kl_to_sft": sum(r["kl"]) / len(r["kl"])}
        for name, r in results.items()}
    policies_report["sft"]["examples"] = [f"{p} {t}" for p, t in zip(prompts[:3], baseline["texts"][:3])]
    for name in [name for name in results if name != "sft"]:
        policies_report[name]["examples"] = [f"{p} {t}" for p, t in zip(prompts[:3], results[name]["example"])]
    run_dir = Path(run_dir)
    shown = [(f"{name}_vs_sft", label) for name, label in
             (("pretrained", "Pre-trained"), ("sft", "SFT"), ("sft_sharpened", f"SFT, T={sharpened or 0:g}"),
              ("rl", "RL (PPO)"), ("rl_no_kl", "RL, no KL"),
              ("rloo", "RLOO"), ("grpo", "GRPO"), ("reinforce_pp", "REINFORCE++"), ("dpo", "DPO"),
              ("rs", "RS"))
             if f"{name}_vs_sft" in win_rates]
    figures = {"win_rates": str(plot_win_rates({label: win_rates[key] for key, label in shown},
                                               run_dir / "win_rates.png",
                                               {label: win_rate_stderr[key] for key, label in shown}))}
    training = {}
    if curves:
        figures["training_curves"] = str(plot_training_curves(curves, run_dir / "training_curves.png"))
        for name, rows in curves.items():
            training[name] = {key: [r.get(key) for r in rows] for key in CURVE_KEYS}
    report = {"stage": "evaluate", "prompts": len(prompts), "temperature": config.temperature,
              "sharpened_sft_temperature": sharpened,
              "win_rates": win_rates, "win_rate_stderr": win_rate_stderr,
              "kl_to_sft": policies_report.get("rl", {}).get("kl_to_sft"),
              "policies": policies_report, "ppo_curves": training, "figures": figures,
              "seconds": time.perf_counter() - started}
    data.write_report(run_dir, report)
    return report
