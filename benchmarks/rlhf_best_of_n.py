"""Best-of-N from SFT and SFT at lower temperatures beside the trained policies of a `bellmax rlhf run`
directory: what each got from the reward model (or from sharpening alone), and at what KL.

For N = 1, 2, 4, ... up to --max-n: the reward model's best of N samples from SFT (among the finished,
non-empty ones; the same samples for every N), with the mean normalized reward-model score of the picks,
their gold score, the win rate against one more SFT answer (the gold labeler, ties half) and the KL
bound log N - (N - 1) / N (it holds for any choice by a score of the answer alone); the same with the rs
stage's regularized choice, argmax r + beta log pi_SFT(y | x) (--ref-coef, 0.1 unless given; 0 leaves it
out). SFT itself sampled at each of --temperatures (0.7 0.5 0.3 unless given), with its KL to SFT at
temperature 1: what sharpening SFT buys with no reward model at all. For each trained policy the
directory holds (ppo, ppo_no_kl, rloo, grpo, reinforce_pp, dpo, rs): one sample per prompt, judged the
same way, with its KL to SFT estimated on its own samples (as the evaluate stage does). A policy below
best-of-N's curve at its KL used the reward model less well than choosing among SFT's answers does.

    python benchmarks/rlhf_best_of_n.py RUN_DIR [--prompts 2000] [--max-n 16] [--ref-coef 0.1]
        [--temperatures 0.7 0.5 0.3] [--torch-threads 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

POLICIES = ("ppo", "ppo_no_kl", "rloo", "grpo", "reinforce_pp", "dpo", "rs")


def mean(values: list[float]) -> float:
    return statistics.fmean(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--prompts", type=int, default=2000, help="held-out prompts (from RUN_DIR/data)")
    parser.add_argument("--max-n", type=int, default=16, help="largest N (powers of two up to it)")
    parser.add_argument("--ref-coef", type=float, default=0.1, help="beta of regularized best-of-N (0: none)")
    parser.add_argument("--temperatures", type=float, nargs="*", default=[0.7, 0.5, 0.3],
                        help="also SFT sampled at these temperatures (none: leave them out)")
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the rows as JSON here too")
    args = parser.parse_args()

    from bellmax.rlhf import data, task
    from bellmax.rlhf.evaluate import gold_scores, sample_answers
    from bellmax.rlhf.model import inference_only, load_causal_lm, load_reward_model, sequence_log_probs, setup_torch
    from bellmax.rlhf.ppo import reward_normalization
    from bellmax.rlhf.rs import best_finished, best_of_n_kl_bound, pickable, reward_model_scores

    started = time.perf_counter()
    run = args.run_dir
    setup_torch(0, args.torch_threads)
    prompts = data.load(run / "data", data.EVAL_PROMPTS).column("prompt")[: args.prompts]
    sft, tokenizer = load_causal_lm(run / "sft")
    sft.eval()
    reward_model = inference_only(load_reward_model(run / "reward")[0])
    reward = reward_model_scores(reward_model, tokenizer, reward_normalization(reward_model, run / "reward"))

    def gold(texts: list[str]) -> list[float]:
        return gold_scores(prompts, texts)

    baseline = gold(sample_answers(sft, tokenizer, prompts, seed=10_000)["texts"])  # the SFT answer to beat

    def row(name: str, texts: list[str], rewards: list[float], kl: float) -> dict:
        scores = gold(texts)
        return {"policy": name, "kl_to_sft": kl, "reward": mean(rewards), "gold_score": mean(scores),
                "win_rate": task.win_rate(scores, baseline), "win_rate_stderr": task.win_rate_stderr(scores, baseline)}

    samples = [sample_answers(sft, tokenizer, prompts, seed=10_001 + i)["texts"] for i in range(args.max_n)]
    rewards = [reward(prompts, texts) for texts in samples]
    usable = [[pickable(t, tokenizer.eos_token) for t in texts] for texts in samples]

    @torch.no_grad()
    def sft_log_likelihood(texts: list[str]) -> list[float]:  # log pi_SFT(y | x), EOS included
        return [v for start in range(0, len(prompts), 256)
                for v in sequence_log_probs(sft, prompts[start: start + 256], texts[start: start + 256],
                                            tokenizer).tolist()]

    likelihood = [sft_log_likelihood(texts) for texts in samples] if args.ref_coef else None
    rows = []
    for beta in [0.0] + ([args.ref_coef] if args.ref_coef else []):
        n = 1
        while n <= args.max_n:
            choose = [[rewards[i][j] + (beta * likelihood[i][j] if beta and likelihood else 0.0)
                       for j in range(len(prompts))] for i in range(n)]
            best = [best_finished([choose[i][j] for i in range(n)], [usable[i][j] for i in range(n)])
                    for j in range(len(prompts))]
            picks = [0 if i is None else i for i in best]  # nothing pickable: the first sample
            name = f"best-of-{n} (SFT)" if not beta else f"regularized best-of-{n} (beta {beta})"
            rows.append(row(name, [samples[i][j] for j, i in enumerate(picks)],
                            [rewards[i][j] for j, i in enumerate(picks)], best_of_n_kl_bound(n)))
            n *= 2
    for k, temperature in enumerate(args.temperatures):
        answers = sample_answers(sft, tokenizer, prompts, seed=30_000 + k, temperature=temperature, reference=sft,
                                 reference_temperature=1.0)
        rows.append(row(f"SFT at T={temperature:g}", answers["texts"], reward(prompts, answers["texts"]),
                        mean(answers["kl"])))
    for k, name in enumerate(POLICIES):
        if not (run / name / "model.safetensors").is_file():
            continue
        model = load_causal_lm(run / name)[0].eval()
        answers = sample_answers(model, tokenizer, prompts, seed=20_000 + k, reference=sft)
        rows.append(row(name, answers["texts"], reward(prompts, answers["texts"]), mean(answers["kl"])))

    print(f"{run}: {len(prompts)} held-out prompts, {time.perf_counter() - started:.0f} s\n")
    print("| policy | KL to SFT (nats) | reward-model score | gold score | win rate vs SFT (+- s.e.) |")
    print("|---|---|---|---|---|")
    for r in rows:
        bound = " (bound)" if "best-of" in r["policy"] else ""
        print(f"| {r['policy']} | {r['kl_to_sft']:.2f}{bound} | {r['reward']:+.3f} | {r['gold_score']:.3f} | "
              f"{r['win_rate']:.3f} +- {r['win_rate_stderr']:.3f} |")
    if args.out is not None:
        args.out.write_text(json.dumps({"run_dir": str(run), "prompts": len(prompts), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
