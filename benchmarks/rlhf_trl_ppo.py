"""Our PPO stage against TRL's PPOTrainer on the same task, SFT policy and reward model.

Both start from the SFT model and the reward model of one `bellmax rlhf run` directory, train for
the same number of rollouts (batch_size responses each, the same PPO epochs, minibatch, learning
rate, fixed KL coefficient, clip range, max response length), then the gold labeler judges samples of
each on the same held-out prompts against SFT (win rate, ties = half). Wall-clock covers the PPO
training only (model loading excluded).

TRL 1.x removed PPOTrainer; this needs TRL 0.24 (its last release with it, which imports with
transformers 5.x). Install it away from the project venv, e.g.

    python3.11 -m venv /tmp/trlvenv
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/trlvenv/lib/python3.11/site-packages/bellmax.pth
    /tmp/trlvenv/bin/pip install -c constraints.txt "trl==0.24.0" accelerate datasets
    /tmp/trlvenv/bin/python benchmarks/rlhf_trl_ppo.py RUN_DIR --iterations 40 --out docs/images/rlhf_trl_ppo.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path


def ours(run_dir: Path, args) -> tuple[float, Path]:
    from bellmax.rlhf.pipeline import preset
    from bellmax.rlhf.ppo import run_ppo

    config = preset(args.preset).with_seed().ppo
    config.seed, config.iterations, config.log_gold = args.seed, args.iterations, False
    config.adaptive_kl = False  # TRL's PPOTrainer has a fixed KL coefficient: compare like with like
    out = Path(args.work) / "bellmax_ppo"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    run_ppo(config, run_dir / "sft", run_dir / "reward", run_dir / "data", out)
    return time.perf_counter() - started, out


def trl(run_dir: Path, args) -> tuple[float, Path]:
    import torch
    from datasets import Dataset
    from trl import PPOConfig, PPOTrainer

    from bellmax.rlhf import data
    from bellmax.rlhf.model import load_causal_lm, load_reward_model
    from bellmax.rlhf.pipeline import preset

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    ours_config = preset(args.preset).ppo
    torch.manual_seed(args.seed)
    torch.set_num_threads(ours_config.torch_threads)
    policy, tokenizer = load_causal_lm(run_dir / "sft")
    reference, _ = load_causal_lm(run_dir / "sft")
    reward_model, _ = load_reward_model(run_dir / "reward")
    value_model, _ = load_reward_model(run_dir / "reward")  # TRL's default: the value model starts from the RM
    tokenizer.padding_side = "left"
    prompts = [r["prompt"] for r in data.load(run_dir / "data", data.PROMPTS).rows]
    n_prompts = ours_config.batch_size * args.iterations
    rows = [[tokenizer.bos_token_id] + tokenizer(p, add_special_tokens=False)["input_ids"]
            for p in (prompts * (1 + n_prompts // len(prompts)))[:n_prompts]]
    dataset = Dataset.from_dict({"input_ids": rows})
    out = Path(args.work) / "trl_ppo"
    shutil.rmtree(out, ignore_errors=True)
    config = PPOConfig(
        output_dir=str(out), per_device_train_batch_size=ours_config.batch_size, gradient_accumulation_steps=1,
        num_mini_batches=ours_config.batch_size // ours_config.minibatch_size, num_ppo_epochs=ours_config.n_epochs,
        learning_rate=ours_config.learning_rate, kl_coef=ours_config.kl_coef, cliprange=ours_config.clip_range,
        cliprange_value=ours_config.clip_range_vf, vf_coef=ours_config.vf_coef, gamma=ours_config.gamma,
        lam=ours_config.gae_lambda, response_length=ours_config.max_new_tokens, temperature=ours_config.temperature,
        stop_token_id=tokenizer.eos_token_id, total_episodes=n_prompts, num_sample_generations=0, seed=args.seed,
        report_to=[], save_strategy="no", use_cpu=True, bf16=False, fp16=False, logging_steps=1,
        lr_scheduler_type="constant", max_grad_norm=ours_config.max_grad_norm, whiten_rewards=False)
    trainer = PPOTrainer(args=config, processing_class=tokenizer, model=policy, ref_model=reference,
                         reward_model=reward_model, train_dataset=dataset, value_model=value_model)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    from bellmax.rlhf.model import save_pretrained

    save_pretrained(out / "model", trainer.model.policy if hasattr(trainer.model, "policy") else policy, tokenizer)
    return seconds, out


def judge(run_dir: Path, policies: dict[str, Path], args) -> dict[str, dict[str, float]]:
    from bellmax.rlhf import data, task
    from bellmax.rlhf.evaluate import gold_scores, sample_answers
    from bellmax.rlhf.model import load_causal_lm

    prompts = [r["prompt"] for r in data.load(run_dir / "data", data.EVAL_PROMPTS).rows]
    sft, tokenizer = load_causal_lm(run_dir / "sft")
    baseline = gold_scores(prompts, sample_answers(sft.eval(), tokenizer, prompts, seed=0)["texts"])
    results = {}
    for name, path in policies.items():
        model = load_causal_lm(path)[0].eval()
        answers = sample_answers(model, tokenizer, prompts, seed=1, reference=sft)
        gold = gold_scores(prompts, answers["texts"])
        results[name] = {"win_rate_vs_sft": task.win_rate(gold, baseline), "gold_score": sum(gold) / len(gold),
                         "kl_to_sft": sum(answers["kl"]) / len(answers["kl"]),
                         "response_length": sum(answers["lengths"]) / len(answers["lengths"])}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished `bellmax rlhf run` directory")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/rlhf_trl_bench")
    parser.add_argument("--only", choices=("bellmax", "trl"), default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    seconds, policies = {}, {}
    for name, function in (("bellmax", ours), ("trl", trl)):
        if args.only in (None, name):
            seconds[name], policies[name] = function(args.run_dir, args)
            print(f"{name}: {seconds[name]:.1f} s", file=sys.stderr)
    results = judge(args.run_dir, {n: p / "model" for n, p in policies.items()}, args)
    for name in results:
        results[name]["ppo_seconds"] = seconds[name]
    report = {"iterations": args.iterations, "seed": args.seed, "preset": args.preset, "results": results}
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
