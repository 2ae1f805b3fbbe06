"""Pretraining and supervised fine-tuning: the same causal-LM loss on different tokens.

    pretrain:  L(phi) = -E_{x ~ D_pretrain}[ 1/|x| sum_t log pi_phi(x_t | x_<t) ]        every token of the text
    sft:       L(phi) = -E_{(x, y) ~ D_demo}[ 1/|y| sum_t log pi_phi(y_t | x, y_<t) ]    completion tokens + EOS only

Pretraining starts a GPT-2 from scratch on the mixed corpus (right and wrong answers), so the
pretrained model does the task only some of the time; SFT fine-tunes it on the few demonstrations
(the "good initialization point" of the lecture). `lm_loss` is also the PPO-ptx term.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bellmax.config import require
from bellmax.core.optim import Adam, clip_grad_norm
from bellmax.core.run import MODEL_RUN_CONFIG_FILE, Run
from bellmax.rlhf import data
from bellmax.rlhf.checkpoints import (
    StageCheckpoints,
    remove_checkpoints,
    resume_point,
    resume_step,
    resumed_seconds,
)
from bellmax.rlhf.model import (
    ModelConfig,
    context_length,
    load_causal_lm,
    load_tokenizer,
    new_causal_lm,
    save_pretrained,
    setup_torch,
    token_log_probs,
)


@dataclass
class LMTrainConfig:
    """Causal-LM training shared by pretraining and SFT."""

    seed: int = 0
    """Seed of initialization and batch order."""
    steps: int = 1_000
    """Adam steps."""
    batch_size: int = 64
    """Sequences per step."""
    learning_rate: float = 1e-3
    """Peak Adam step size (linear warm-up, then cosine decay to a tenth)."""
    warmup_steps: int = 50
    """Steps of linear learning-rate warm-up."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this."""
    log_every: int = 50
    """Log the loss every this many steps."""
    torch_threads: int = 1
    """Threads torch may use (more than the idle cores makes it much slower)."""
    checkpoint_every: int = 200
    """Save a checkpoint every this many steps, to resume a killed stage from (0: never)."""
    keep_checkpoints: int = 2
    """Keep the newest this many checkpoints (a damaged newest one falls back to the one before)."""

    def validate(self) -> None:
        require(self.seed >= 0, "seed", self.seed, "a non-negative integer")
        require(self.steps >= 1, "steps", self.steps, "at least 1")
        require(self.batch_size >= 1, "batch_size", self.batch_size, "at least 1")
        require(math.isfinite(self.learning_rate) and self.learning_rate > 0, "learning_rate", self.learning_rate,
                "a positive number (e.g. 1e-3)")
        require(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, ">= 0")
        require(self.max_grad_norm > 0, "max_grad_norm", self.max_grad_norm, "positive")
        require(self.log_every >= 1, "log_every", self.log_every, "at least 1")
        require(self.torch_threads >= 1, "torch_threads", self.torch_threads, "at least 1")
        require(self.checkpoint_every >= 0, "checkpoint_every", self.checkpoint_every, ">= 0")
        require(self.keep_checkpoints >= 1, "keep_checkpoints", self.keep_checkpoints, "at least 1")


@dataclass
class PretrainConfig(LMTrainConfig):
    """Pretraining a GPT-2 from scratch on the corpus."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """Shape of the new model."""

    def validate(self) -> None:
        super().validate()
        self.model.validate()


@dataclass
class SFTConfig(LMTrainConfig):
    """Supervised fine-tuning on demonstrations."""

    steps: int = 300
    learning_rate: float = 3e-4
    warmup_steps: int = 20
    eval_prompts: int = 200
    """Held-out prompts sampled at the end to report the gold score (0: skip)."""

    def validate(self) -> None:
        super().validate()
        require(self.eval_prompts >= 0, "eval_prompts", self.eval_prompts, ">= 0")


# -- losses and batches -------------------------------------------------------------------------
def lm_loss(logits: torch.Tensor, ids: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """-mean over masked targets of log pi(x_t | x_<t); logits (B, L, V) from ids (B, L), loss_mask (B, L)
    marks the target tokens that count (position 0 never is a target)."""
    log_probs = token_log_probs(logits[:, :-1], ids[:, 1:])
    target_mask = loss_mask[:, 1:].float()
    return -(log_probs * target_mask).sum() / target_mask.sum().clamp(min=1.0)


def encode_sequences(tokenizer, parts: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BOS + context + target, right-padded; (ids, attention_mask, loss_mask) with the loss on target tokens.

    For pretraining the context is empty and the target is the whole text; for SFT the context is
    the prompt and the target the completion followed by EOS.
    """
    return pad_sequences(tokenizer, *sequence_ids(tokenizer, parts))


def sequence_ids(tokenizer, parts: list[tuple[str, str]]) -> tuple[list[list[int]], list[int]]:
    """The token ids of each BOS + context + target, and where its target starts."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    contexts = tokenizer([context for context, _ in parts], add_special_tokens=False)["input_ids"]
    targets = tokenizer([target for _, target in parts], add_special_tokens=False)["input_ids"]
    heads = [bos + (ids if context else []) for ids, (context, _) in zip(contexts, parts)]
    return [head + tail for head, tail in zip(heads, targets)], [len(head) for head in heads]


def pad_sequences(tokenizer, rows: list[list[int]],
                  starts: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (ids, attention_mask, loss_mask) of `sequence_ids`' rows, the loss from each start on."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    loss_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, start) in enumerate(zip(rows, starts)):
        ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
        loss_mask[i, start: len(row)] = 1
    return ids, attention_mask, loss_mask


def corpus_parts(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [("", r["text"]) for r in rows]


def demonstration_parts(tokenizer, rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["prompt"], f"{r['completion']} {tokenizer.eos_token}") for r in rows]


def corpus_tensors(tokenizer, rows: list[dict[str, Any]]):
    return encode_sequences(tokenizer, corpus_parts(rows))


def demonstration_tensors(tokenizer, rows: list[dict[str, Any]]):
    return encode_sequences(tokenizer, demonstration_parts(tokenizer, rows))


def checked_tensors(tokenizer, records: data.Records, parts: list[tuple[str, str]], context: int | None, what: str,
                    fix: str) -> tuple[torch.Tensor, ...]:
    """`encode_sequences(parts)` of the records, once each sequence is known to fit the model's context."""
    rows, starts = sequence_ids(tokenizer, parts)
    if context is not None:
        data.check_context(records, [len(r) for r in rows], context, what, fix)
    return pad_sequences(tokenizer, rows, starts)


def sample_batch(tensors: tuple[torch.Tensor, ...], batch_size: int, generator: torch.Generator):
    """A random batch of rows, cut to its longest sequence (tensors[1] is the attention mask)."""
    rows = torch.randint(0, tensors[0].shape[0], (batch_size,), generator=generator)
    width = int(tensors[1][rows].sum(1).max())
    return tuple(t[rows, :width] for t in tensors)


def learning_rate_at(step: int, config: LMTrainConfig) -> float:
    """Linear warm-up to the peak, then cosine decay to a tenth of it."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_lm(model, tensors, config: LMTrainConfig, run: Run | None = None,
             checkpoint: dict[str, Any] | None = None) -> dict[str, float]:
    """Minimize `lm_loss` for config.steps Adam steps; returns the last logged loss and throughput.
    With a run, a checkpoint goes to its directory every config.checkpoint_every steps (and at
    Ctrl-C); `checkpoint`, one of them, continues the steps from where it was written."""
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = Adam(model.parameters(), lr=config.learning_rate)
    started, tokens, done = time.perf_counter(), 0, 0
    losses: list[float] = []
    checkpoints = StageCheckpoints(run, config, {"model": model}, {"adam": optimizer}, {"batches": generator},
                                   running=lambda: {"tokens": tokens, "losses": losses,
                                                    "seconds": time.perf_counter() - started})
    if checkpoint is not None:
        done, loop = checkpoints.restore(checkpoint)
        tokens, losses, started = loop["tokens"], loop["losses"], started - loop["seconds"]
    model.train()
    with checkpoints:
        for step in range(done, config.steps):
            ids, attention_mask, loss_mask = sample_batch(tensors, config.batch_size, generator)
            optimizer.param_groups[0]["lr"] = learning_rate_at(step, config)
            loss = lm_loss(model(ids, attention_mask=attention_mask).logits, ids, loss_mask)
            optimizer.zero_grad()
            loss.backward()
            clip_grad_norm(model.parameters(), config.max_grad_norm)
            optimizer.step()
            tokens += int(attention_mask.sum())
            losses.append(loss.item())
            if run is not None and ((step + 1) % config.log_every == 0 or step + 1 == config.steps):
                seconds = time.perf_counter() - started
                run.log(step + 1, {"losses/lm": sum(losses[-config.log_every:]) / len(losses[-config.log_every:]),
                                   "losses/learning_rate": optimizer.param_groups[0]["lr"],
                                   "time/tokens_per_s": tokens / seconds})
            checkpoints.step_done(step + 1)
    model.eval()
    seconds = time.perf_counter() - started
    return {"final_loss": sum(losses[-config.log_every:]) / len(losses[-config.log_every:]),
            "train_seconds": seconds, "tokens_per_s": tokens / seconds}


# -- stages -------------------------------------------------------------------------------------
def run_pretrain(config: PretrainConfig, data_dir: Path, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Stage 0: a GPT-2 from scratch on data_dir/corpus.jsonl with data_dir's tokenizer; resume:
    continue from run_dir's newest checkpoint (if it has one)."""
    config.validate()
    started = time.perf_counter()
    corpus = data.load(data_dir, data.CORPUS)
    tokenizer = load_tokenizer(data.tokenizer_dir(data_dir), "--data")
    tensors = checked_tensors(tokenizer, corpus, corpus_parts(corpus.rows), config.model.n_positions,
                              "BOS + text come to", "shorten that text or raise --model.n-positions")
    setup_torch(config.seed, config.torch_threads)
    model = new_causal_lm(tokenizer, config.model)
    checkpoint = resume_point(run_dir, "rlhf-pretrain", config, resume)
    with Run(run_dir, "rlhf-pretrain", {"config": data.config_dict(config), "data": str(data_dir)},
             resume_step=resume_step(checkpoint), tensorboard=False,
             config_file=MODEL_RUN_CONFIG_FILE) as run:
        stats = train_lm(model, tensors, config, run, checkpoint)
        save_pretrained(run_dir, model, tokenizer)
        report = {"stage": "pretrain", "parameters": sum(p.numel() for p in model.parameters()),
                  "sequences": len(corpus), **stats,
                  "seconds": time.perf_counter() - started + resumed_seconds(checkpoint)}
        data.write_report(run_dir, report)
        remove_checkpoints(run_dir)
    return report


SFT_GOLD_TOKENS = 16  # the longest answer sampled for the gold score at the end of SFT


def run_sft(config: SFTConfig, model_path: Path, data_dir: Path, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Stage 1: fine-tune the model at model_path on data_dir/sft.jsonl (loss on completions only);
    resume: continue from run_dir's newest checkpoint (if it has one)."""
    from bellmax.rlhf.evaluate import mean_gold_score

    config.validate()
    started = time.perf_counter()
    demonstrations = data.load(data_dir, data.SFT)
    held_out = data.load(data_dir, data.EVAL_PROMPTS) if config.eval_prompts else None
    setup_torch(config.seed, config.torch_threads)
    model, tokenizer = load_causal_lm(model_path)
    context = context_length(model)
    tensors = checked_tensors(tokenizer, demonstrations, demonstration_parts(tokenizer, demonstrations.rows), context,
                              "BOS + prompt + completion + EOS come to",
                              "shorten that demonstration, or fine-tune a model with a larger context")
    if held_out is not None:
        data.check_prompts_fit(held_out, tokenizer, [model], SFT_GOLD_TOKENS,
                               "shorten that prompt, set --eval-prompts 0, or use a model with a larger context")
    checkpoint = resume_point(run_dir, "rlhf-sft", config, resume)
    with Run(run_dir, "rlhf-sft", {"config": data.config_dict(config), "model": str(model_path),
                                   "data": str(data_dir)}, resume_step=resume_step(checkpoint),
             tensorboard=False, config_file=MODEL_RUN_CONFIG_FILE) as run:
        stats = train_lm(model, tensors, config, run, checkpoint)
        save_pretrained(run_dir, model, tokenizer)
        report = {"stage": "sft", "demonstrations": len(demonstrations), **stats}
        if held_out is not None:
            prompts = held_out.column("prompt")[: config.eval_prompts]
            report["gold_score"] = mean_gold_score(model, tokenizer, prompts, seed=config.seed,
                                                   max_new_tokens=SFT_GOLD_TOKENS)
        report["seconds"] = time.perf_counter() - started + resumed_seconds(checkpoint)
        data.write_report(run_dir, report)
        remove_checkpoints(run_dir)
    return report
