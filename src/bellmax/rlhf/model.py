"""The models of RLHF on Hugging Face `transformers`, and the few operations on them that RLHF needs.

- the **policy** pi_phi: a causal LM (`GPT2LMHeadModel` when we make one; any
  `AutoModelForCausalLM` directory when a user brings one), plus a **value head** V(s_t) on its last
  hidden state (`PolicyWithValue`), as in TRL's value-head models;
- the **reference** pi_SFT: a frozen copy of the SFT policy (`inference_only`: no gradients, eval mode);
- the **reward model** r_theta(x, y): the SFT transformer with a scalar head that reads the last
  non-pad token (`AutoModelForSequenceClassification` with num_labels = 1).

Sequences are a left-padded prompt (the query, starting with BOS) followed by a right-padded
response that ends at its first EOS, so every row's prompt ends in the same column. Position ids
are counted over real tokens only (`positions`), so padding never changes a row's numbers.
Everything loads and saves the Hugging Face way (`from_pretrained` / `save_pretrained`).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DynamicCache,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from bellmax.config import require
from bellmax.errors import BellmaxError
from bellmax.rlhf import task

transformers.logging.set_verbosity_error()  # "newly initialized score head" is expected for a reward model
transformers.logging.disable_progress_bar()
MODEL_DIR = "model"  # a stage's run directory keeps its model here


@dataclass
class ModelConfig:
    """Shape of the GPT-2 we train from scratch."""

    n_layer: int = 4
    """Transformer blocks."""
    n_embd: int = 128
    """Width of the residual stream."""
    n_head: int = 4
    """Attention heads (must divide n_embd)."""
    n_positions: int = 64
    """Longest sequence (prompt + response) in tokens."""

    def validate(self) -> None:
        require(self.n_layer >= 1, "n_layer", self.n_layer, "at least 1")
        require(self.n_head >= 1 and self.n_embd % self.n_head == 0, "n_embd", self.n_embd,
                f"a positive multiple of n_head={self.n_head}")
        require(self.n_positions >= 8, "n_positions", self.n_positions, "at least 8")


def setup_torch(seed: int, threads: int) -> None:
    """Same seed, same numbers: seed torch's global generator (model initialization) and set the threads."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)


# -- tokenizer and models -----------------------------------------------------------------------
def build_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over `words` plus <pad> <bos> <eos> <unk>, built locally with `tokenizers`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.WordLevel(unk_token=task.UNK))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins word tokens with spaces
    trainer = trainers.WordLevelTrainer(special_tokens=list(task.SPECIAL_TOKENS), min_frequency=1)
    backend.train_from_iterator([" ".join(words)], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=task.PAD, bos_token=task.BOS,
                                   eos_token=task.EOS, unk_token=task.UNK)


def new_causal_lm(tokenizer, config: ModelConfig) -> GPT2LMHeadModel:
    """A GPT-2 from scratch with the tokenizer's ids (GPT-2's default 50256 would be wrong) and no
    dropout (dropout costs 30-40% of the speed and these models do not overfit in a few minutes)."""
    config.validate()
    gpt_config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=config.n_positions, n_embd=config.n_embd, n_layer=config.n_layer,
        n_head=config.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return GPT2LMHeadModel(gpt_config)


def model_dir(path: Path | str, flag: str = "--model") -> Path:
    """The Hugging Face directory at `path` or in its `model/` (a stage's run directory)."""
    path = Path(path)
    for candidate in (path, path / MODEL_DIR):
        if (candidate / "config.json").is_file() and any(candidate.glob("*.safetensors")):
            return candidate
    if not path.exists():
        raise BellmaxError(f"{flag} {path} does not exist; give a Hugging Face model directory or a stage's run dir")
    raise BellmaxError(f"{flag} {path} holds no Hugging Face model (no config.json + *.safetensors in it or "
                       f"in {path / MODEL_DIR}); run the stage that makes it first")


def _load_tokenizer(directory: Path):
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    if tokenizer.pad_token is None:  # e.g. GPT-2's own tokenizer: pad with EOS, the usual convention
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token is None:
        raise BellmaxError(f"the tokenizer in {directory} has no EOS token; generation could never stop")
    return tokenizer


def load_causal_lm(path: Path | str, flag: str = "--model"):
    """(model, tokenizer) from a local Hugging Face causal-LM directory."""
    directory = model_dir(path, flag)
    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32)
    tokenizer = _load_tokenizer(directory)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_reward_model(path: Path | str, flag: str = "--reward-model"):
    """(reward model, tokenizer); from a causal-LM directory this adds a fresh scalar head (num_labels = 1)."""
    directory = model_dir(path, flag)
    tokenizer = _load_tokenizer(directory)
    model = AutoModelForSequenceClassification.from_pretrained(str(directory), num_labels=1, dtype=torch.float32,
                                                               pad_token_id=tokenizer.pad_token_id)
    return model, tokenizer


def save_pretrained(directory: Path | str, model, tokenizer) -> Path:
    """Save model and tokenizer the Hugging Face way, atomically: into a temporary sibling, then renamed."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
    if directory.exists():
        old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        directory.rename(old)
        staging.rename(directory)
        shutil.rmtree(old)
    else:
        staging.rename(directory)
    return directory


def inference_only(model: nn.Module) -> nn.Module:
    """The model with gradients off and in eval mode (the reference and the reward model during PPO)."""
    model.requires_grad_(False)
    return model.eval()


class PolicyWithValue(nn.Module):
    """pi_phi(a_t | s_t) and V(s_t). Without a critic, a scalar value head shares the policy's trunk
    (one pass, as TRL's value-head models); with one (a sequence-classification model, e.g. a copy of
    the reward model, as in InstructGPT), V(s_t) is its scalar head at every position."""

    def __init__(self, lm: PreTrainedModel, critic: PreTrainedModel | None = None):
        super().__init__()
        self.lm = lm
        self.critic = critic
        if critic is None:
            self.value_head = nn.Linear(lm.config.hidden_size, 1)
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)

    def forward(self, query: torch.Tensor, query_mask: torch.Tensor, response: torch.Tensor,
                response_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """logits: (B, R, V) of the distributions that chose each response token; values: (B, R), V(s_t)."""
        ids, mask = torch.cat([query, response], 1), torch.cat([query_mask, response_mask], 1)
        before = slice(query.shape[1] - 1, -1)  # the state before each response token
        position_ids = positions(mask)
        hidden = self.lm.base_model(ids, attention_mask=mask, position_ids=position_ids).last_hidden_state
        logits = self.lm.get_output_embeddings()(hidden[:, before])
        if self.critic is None:
            return logits, self.value_head(hidden[:, before]).squeeze(-1)
        critic_hidden = self.critic.base_model(ids, attention_mask=mask, position_ids=position_ids).last_hidden_state
        score = self.critic.get_submodule("score")  # a sequence classifier's scalar head
        return logits, score(critic_hidden[:, before]).squeeze(-1)


# -- sequences ----------------------------------------------------------------------------------
def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids counting real tokens only: left padding does not shift a row."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _bos(tokenizer) -> list[int]:
    return [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []


def encode_prompts(tokenizer, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """BOS + prompt, left-padded: (ids, mask), both (B, P)."""
    rows = [_bos(tokenizer) + tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row)
        mask[i, width - len(row):] = 1
    return ids, mask


def encode_responses(tokenizer, responses: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Response texts (EOS written as the token, if the response had one), right-padded: (ids, mask)."""
    rows = [tokenizer(r, add_special_tokens=False)["input_ids"] or [tokenizer.pad_token_id] for r in responses]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = int(bool(responses[i].split()))
    return ids, mask


def decode_responses(tokenizer, response: torch.Tensor, response_mask: torch.Tensor) -> list[str]:
    """Texts of generated responses, EOS kept (the gold labeler checks for it), padding dropped."""
    return [tokenizer.decode(row[m.bool()].tolist()) for row, m in zip(response, response_mask)]


def response_mask_from_eos(response: torch.Tensor, eos_id: int) -> torch.Tensor:
    """1 up to and including the first EOS of each row, 0 after it."""
    is_eos = (response == eos_id).long()
    return ((is_eos.cumsum(1) - is_eos) == 0).long()


@torch.no_grad()
def generate(model: nn.Module, query: torch.Tensor, query_mask: torch.Tensor, max_new_tokens: int, eos_id: int,
             pad_id: int, generator: torch.Generator | None = None, temperature: float = 1.0,
             greedy: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample responses with the KV cache; (response, response_mask), both (B, R <= max_new_tokens).

    Padding is masked (attention mask + position ids over real tokens), a row stops at its EOS
    (later columns hold pad with mask 0), and sampling stops once every row has stopped.
    """
    cache = DynamicCache()
    mask = query_mask.long()
    position = positions(mask)[:, -1:]
    # positional arguments: the cache is `past_key_values` in transformers 4.x and `cache` in 5.x
    logits = model(query, cache, attention_mask=mask, position_ids=positions(mask), use_cache=True).logits[:, -1]
    finished = torch.zeros(query.shape[0], dtype=torch.bool)
    tokens = []
    for _ in range(max_new_tokens):
        if greedy:
            token = logits.argmax(-1)
        else:
            probs = torch.softmax(logits.float() / temperature, -1)
            token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        token = torch.where(finished, torch.full_like(token, pad_id), token)
        tokens.append(token)
        finished |= token == eos_id
        if finished.all():
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        position = position + 1
        logits = model(token[:, None], cache, attention_mask=mask, position_ids=position, use_cache=True).logits[:, -1]
    response = torch.stack(tokens, 1)
    return response, response_mask_from_eos(response, eos_id)


def token_log_probs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log pi(a_t | s_t) of the chosen tokens: (B, T)."""
    return torch.log_softmax(logits.float(), -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """H[pi(. | s_t)] per position: (B, T)."""
    log_p = torch.log_softmax(logits.float(), -1)
    return -(log_p.exp() * log_p).sum(-1)


def response_logits(model: nn.Module, query: torch.Tensor, query_mask: torch.Tensor, response: torch.Tensor,
                    response_mask: torch.Tensor) -> torch.Tensor:
    """Logits (B, R, V) of a causal LM at the positions that predict each response token."""
    ids, mask = torch.cat([query, response], 1), torch.cat([query_mask, response_mask], 1)
    logits = model(ids, attention_mask=mask, position_ids=positions(mask)).logits
    return logits[:, query.shape[1] - 1: -1]


def reward_scores(reward_model: PreTrainedModel, query: torch.Tensor, query_mask: torch.Tensor, response: torch.Tensor,
                  response_mask: torch.Tensor) -> torch.Tensor:
    """r_theta(x, y): the scalar head at the last non-pad token of prompt + response, (B,)."""
    ids, mask = torch.cat([query, response], 1), torch.cat([query_mask, response_mask], 1)
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, reward_model.config.pad_token_id))
    return reward_model(ids, attention_mask=mask, position_ids=positions(mask)).logits[:, 0]
