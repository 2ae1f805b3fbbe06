"""The models of RLHF on Hugging Face `transformers`, and the few operations on them that RLHF needs.

- the **policy** pi_phi: a causal LM (`GPT2LMHeadModel` when we make one; any
  `AutoModelForCausalLM` directory when a user brings one), plus a **value head** V(s_t) on its last
  hidden state (`PolicyWithValue`), as in TRL's value-head models;
- the **reference** pi_SFT: a frozen copy of the SFT policy (`inference_only`: no gradients, eval mode);
- the **reward model** r_theta(x, y): the SFT transformer with a scalar head that reads the last
  real token, the last attention-mask position (`AutoModelForSequenceClassification` with num_labels = 1).

Sequences are a left-padded prompt (the query, starting with BOS) followed by a right-padded
response that ends at its first EOS, so every row's prompt ends in the same column. Position ids
are counted over real tokens only (`positions`), so padding never changes a row's numbers.
Everything loads and saves the Hugging Face way (`from_pretrained` / `save_pretrained`): a stage's
run directory is itself a model directory, so `AutoModelForCausalLM.from_pretrained(RUN_DIR / "sft")`
and `AutoTokenizer.from_pretrained(...)` give what bellmax trained, BOS included.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from safetensors import safe_open
from torch import nn
from transformers import (
    AutoConfig,
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
MODEL_DIR = "model"  # where run directories of earlier bellmax releases kept their model (still read)


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
    """A word-level tokenizer over `words` plus <pad> <bos> <eos> <unk>, built locally with `tokenizers`.

    `tokenizer(text)` starts with <bos>, as every model here is trained (`add_bos_token`: a
    TemplateProcessing post-processor, so plain `transformers` and TRL add it too); bellmax's own
    encoders call it with `add_special_tokens=False` and put the BOS in themselves, once. Words are
    split at whitespace and around the separators ":" and "=", and the special tokens are matched
    anywhere, so a prompt and its completion concatenate cleanly whichever side holds the space
    ("sort : 2 1 =" + " 1 2" + "<eos>" is sort : 2 1 = 1 2 <eos>). Padding is on the left, as
    batched generation needs (`tokenizer(prompts, padding=True)` then `generate`).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    backend = Tokenizer(models.WordLevel(unk_token=task.UNK))
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(Regex("[:=]"), behavior="isolated")])
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins word tokens with spaces
    trainer = trainers.WordLevelTrainer(special_tokens=list(task.SPECIAL_TOKENS), min_frequency=1)
    backend.train_from_iterator([" ".join(words)], trainer=trainer)
    bos = (task.BOS, backend.token_to_id(task.BOS))
    # in tokenizer.json, which every transformers release reads (add_bos_token below builds the same)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{task.BOS} $A", pair=f"{task.BOS} $A {task.BOS}:1 $B:1", special_tokens=[bos])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=task.PAD, bos_token=task.BOS,
                                   eos_token=task.EOS, unk_token=task.UNK, add_bos_token=True, add_eos_token=False,
                                   padding_side="left")


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
    """The Hugging Face directory at `path` (a model directory, or a stage's run directory, which holds its
    model at the top), or in `path/model/`, where run directories of earlier releases kept it."""
    path = Path(path)
    for candidate in (path, path / MODEL_DIR):
        if (candidate / "config.json").is_file() and any(candidate.glob("*.safetensors")):
            return candidate
    if not path.exists():
        raise BellmaxError(f"{flag} {path} does not exist; give a Hugging Face model directory or a stage's run dir")
    raise BellmaxError(f"{flag} {path} holds no Hugging Face model (no config.json + *.safetensors in it or "
                       f"in {path / MODEL_DIR}); run the stage that makes it first")


# transformers, tokenizers and safetensors report an unreadable file with many exception types
# (OSError, ValueError, KeyError, TypeError, RuntimeError and their own); at the points below that
# load a user's directory, any of them means "this file cannot be used", so each is caught there
# and turned into one line naming the directory and the file.
REPAIR = "restore the file, or save the model again (rerun the stage that made it)"


def _reason(exc: BaseException) -> str:
    """An exception's message on one line, cut short."""
    words = " ".join(str(exc).split()) or type(exc).__name__
    return words if len(words) <= 300 else words[:297] + "..."


def check_model_dir(path: Path | str, flag: str = "--model") -> Path:
    """`model_dir(path)`, with its files readable: every JSON file parses, config.json is a config
    transformers knows, and every *.safetensors file is whole (its header and its size agree).
    Cheap (no weights are read), so the CLI calls it for every model input before a stage starts."""
    directory = model_dir(path, flag)
    verify_checksums(directory, flag)
    check_json_files(directory, flag)
    try:
        AutoConfig.from_pretrained(str(directory))
    except Exception as exc:  # see REPAIR
        raise BellmaxError(f"{flag} {directory}: config.json is not a model config transformers can read "
                           f"({_reason(exc)}); {REPAIR}") from None
    for weights in sorted(directory.glob("*.safetensors")):
        try:
            with safe_open(str(weights), framework="pt") as tensors:
                for name in tensors.keys():
                    tensors.get_slice(name).get_shape()
        except Exception as exc:  # see REPAIR
            raise BellmaxError(f"{flag} {directory}: {weights.name} is damaged or cut short ({_reason(exc)}); "
                               f"{REPAIR}") from None
    return directory


# Every model a stage saves carries CHECKSUMS_FILE: the format of bellmax's model directories and the
# SHA-256 of each weights file, so that a changed or cut byte in the weights (which safetensors does
# not check) is caught when the model is loaded. The JSON files stay editable by hand, as Hugging
# Face users edit them; they are checked for what they say instead. Directories from elsewhere (a
# model a user brings) have no checksums and are checked only for readability.
CHECKSUMS_FILE = "bellmax_checksums.json"
MODEL_FORMAT = 1


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_checksums(directory: Path) -> None:
    files = sorted(directory.glob("*.safetensors"))
    record = {"format": MODEL_FORMAT, "sha256": {p.name: _sha256(p) for p in files}}
    (directory / CHECKSUMS_FILE).write_text(json.dumps(record, indent=1) + "\n")


def verify_checksums(directory: Path, flag: str) -> None:
    """Check the files of a model bellmax saved against the checksums saved with them."""
    path = directory / CHECKSUMS_FILE
    if not path.exists():
        return
    try:
        record = json.loads(path.read_text())
        fmt, sums = int(record["format"]), dict(record["sha256"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise BellmaxError(f"{flag} {directory}: {CHECKSUMS_FILE} is damaged; {REPAIR}") from None
    if fmt > MODEL_FORMAT:
        raise BellmaxError(f"{flag} {directory} has model format {fmt}, written by a newer bellmax than this one "
                           f"(which reads formats up to {MODEL_FORMAT}): upgrade bellmax")
    for name, expected in sums.items():
        if not (directory / name).is_file():
            raise BellmaxError(f"{flag} {directory}: {name} is missing (it was saved with the model); {REPAIR}")
        if _sha256(directory / name) != expected:
            raise BellmaxError(f"{flag} {directory}: {name} is damaged: its content does not match the SHA-256 saved "
                               f"with it in {CHECKSUMS_FILE}; {REPAIR}")


def check_json_files(directory: Path, flag: str) -> None:
    """Every *.json file in `directory` (config, tokenizer, generation config) is UTF-8 JSON."""
    for path in sorted(Path(directory).glob("*.json")):
        raw = path.read_bytes()
        try:
            json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise BellmaxError(f"{flag} {directory}: {path.name} line {line} is not UTF-8 text; {REPAIR}") from None
        except json.JSONDecodeError as exc:
            raise BellmaxError(f"{flag} {directory}: {path.name} line {exc.lineno} is not valid JSON ({exc.msg}, "
                               f"column {exc.colno}); {REPAIR}") from None
        except (ValueError, RecursionError) as exc:  # an integer of more than 4,300 digits, deep nesting
            raise BellmaxError(f"{flag} {directory}: {path.name} is not usable JSON ({_reason(exc)}); {REPAIR}") \
                from None


def load_tokenizer(directory: Path, flag: str = "--model"):
    """The tokenizer saved in `directory`, with a pad token (EOS if it has none) and an EOS token."""
    check_json_files(directory, flag)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
    except Exception as exc:  # see REPAIR
        raise BellmaxError(f"{flag} {directory}: the tokenizer (tokenizer.json, tokenizer_config.json) cannot be "
                           f"loaded ({_reason(exc)}); {REPAIR}") from None
    if tokenizer.pad_token is None:  # e.g. GPT-2's own tokenizer: pad with EOS, the usual convention
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token is None:
        raise BellmaxError(f"the tokenizer in {directory} has no EOS token; generation could never stop")
    return tokenizer


def _load_weights(model_class, directory: Path, flag: str, new_head: bool = False, **kwargs):
    """`model_class.from_pretrained(directory)`, refusing weights that do not fit config.json: a tensor
    whose shape differs (named), or tensors of the trunk that config.json describes and the files lack
    or the other way round (transformers would initialize the missing ones at random, silently).
    With `new_head`, tensors outside the trunk may be missing: the fresh head of a reward model."""
    try:
        model, info = model_class.from_pretrained(str(directory), dtype=torch.float32, output_loading_info=True,
                                                  **kwargs)
    except Exception as exc:  # see REPAIR
        mismatch = _shape_mismatch(model_class, directory)
        reason = (f"{mismatch}: config.json lacks a size or holds a wrong one (n_embd, n_positions, ...)" if mismatch
                  else _reason(exc))
        raise BellmaxError(f"{flag} {directory}: cannot build the model from config.json and its weights ({reason}); "
                           f"{REPAIR}") from None
    trunk = f"{model.base_model_prefix}."
    missing = sorted(k for k in info["missing_keys"] if k.startswith(trunk) or not new_head)
    unexpected = sorted(k for k in info["unexpected_keys"] if k.startswith(trunk))
    if missing or unexpected:
        problem = (f"config.json describes {len(missing)} tensor(s) the weights lack (e.g. {missing[0]})" if missing
                   else f"the weights hold {len(unexpected)} tensor(s) config.json does not describe "
                        f"(e.g. {unexpected[0]})")
        raise BellmaxError(f"{flag} {directory}: {problem}; config.json lacks a key or holds a wrong one "
                           f"(n_layer, for one); {REPAIR}")
    return model


def _shape_mismatch(model_class, directory: Path) -> str:
    """"NAME is (a, b) in FILE but (c, d) by config.json" for the first such tensor, else "" (also
    when config.json cannot even build the model: the exception then says why)."""
    try:
        config = AutoConfig.from_pretrained(str(directory))
        with torch.device("meta"):  # shapes only: nothing is allocated
            expected = {name: tuple(t.shape) for name, t in model_class.from_config(config).state_dict().items()}
    except Exception:  # see REPAIR
        return ""
    for weights in sorted(directory.glob("*.safetensors")):
        with safe_open(str(weights), framework="pt") as tensors:
            for name in sorted(tensors.keys()):
                shape = tuple(tensors.get_slice(name).get_shape())
                if name in expected and expected[name] != shape:
                    return f"{name} is {shape} in {weights.name} but {expected[name]} by config.json"
    return ""


def load_causal_lm(path: Path | str, flag: str = "--model"):
    """(model, tokenizer) from a local Hugging Face causal-LM directory."""
    directory = check_model_dir(path, flag)
    tokenizer = load_tokenizer(directory, flag)
    model = _load_weights(AutoModelForCausalLM, directory, flag)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_reward_model(path: Path | str, flag: str = "--reward-model"):
    """(reward model, tokenizer); from a causal-LM directory this adds a fresh scalar head (num_labels = 1)."""
    directory = check_model_dir(path, flag)
    tokenizer = load_tokenizer(directory, flag)
    model = _load_weights(AutoModelForSequenceClassification, directory, flag, new_head=True, num_labels=1,
                          pad_token_id=tokenizer.pad_token_id)
    return model, tokenizer


def context_length(model: PreTrainedModel) -> int | None:
    """The longest sequence the model's position embeddings cover (GPT-2's n_positions), if it says."""
    length = getattr(model.config, "max_position_embeddings", None)
    return length if isinstance(length, int) else None


def save_pretrained(directory: Path | str, model, tokenizer, padding_side: str = "left") -> Path:
    """Save model and tokenizer the Hugging Face way into `directory` (a stage's run directory, or a
    directory of their own), so that `from_pretrained(directory)` finds them.

    The tokenizer is saved with the model's context as `model_max_length` (n_positions) and with
    `padding_side`: "left" for a causal LM (batched `generate` then continues every prompt from the
    same column, and numbers positions over real tokens), "right" for a reward model (a plain forward
    numbers positions from the first column, so only right padding leaves each row's numbers those
    of the unpadded sequence). bellmax pads its own batches and is not affected by either.

    Everything is written into a temporary sibling first. A new directory is then renamed into
    place; into an existing one (a run directory) the files are moved one by one, the weights first
    and their checksums last, so a save cut short leaves weights that disagree with the checksums
    saved with them (refused when loaded), never a silently mixed model.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    context = context_length(model)
    if context is not None:
        tokenizer.model_max_length = context
        if getattr(model, "generation_config", None) is not None:  # `generate` never runs past the context
            model.generation_config.max_length = context
    tokenizer.padding_side = padding_side
    add_bos(tokenizer)
    model.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
    write_checksums(staging)
    if not directory.exists():
        staging.rename(directory)
        return directory
    saved = {p.name for p in staging.iterdir()}
    for stale in [*directory.glob("*.safetensors"), *directory.glob("*.safetensors.index.json")]:
        if stale.name not in saved:  # weights of an earlier save that this one does not have
            stale.unlink()
    for name in sorted(saved, key=lambda n: (n == CHECKSUMS_FILE, not n.endswith(".safetensors"), n)):
        os.replace(staging / name, directory / name)
    staging.rmdir()
    return directory


def add_bos(tokenizer) -> None:
    """Make `tokenizer(text)` start with the BOS, as bellmax trains every model (its own encoders put
    the BOS in themselves), where the tokenizer has a BOS and does not add it yet: a tokenizer of an
    earlier release, or one a user brought. Only a tokenizer with a `tokenizers` backend can be taught."""
    bos, bos_id = tokenizer.bos_token, tokenizer.bos_token_id
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if bos is None or bos_id is None or backend is None or tokenizer("x")["input_ids"][:1] == [bos_id]:
        return
    from tokenizers import processors

    template = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos}:1 $B:1",
                                             special_tokens=[(bos, bos_id)])
    current = backend.post_processor
    backend.post_processor = template if current is None else processors.Sequence([current, template])


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
        return logits, score_head(self.critic)(critic_hidden[:, before]).squeeze(-1)


# -- sequences ----------------------------------------------------------------------------------
def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids counting real tokens only: left padding does not shift a row."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _bos(tokenizer) -> list[int]:
    return [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []


def prompt_ids(tokenizer, prompts: list[str]) -> list[list[int]]:
    """BOS + prompt tokens of each prompt: the query the policy continues."""
    return [_bos(tokenizer) + ids for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]


def response_ids(tokenizer, responses: list[str]) -> list[list[int]]:
    """The tokens of each response text (a lone pad token for an empty one, masked out)."""
    return [ids or [tokenizer.pad_token_id] for ids in tokenizer(responses, add_special_tokens=False)["input_ids"]]


def encode_prompts(tokenizer, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """BOS + prompt, left-padded: (ids, mask), both (B, P)."""
    rows = prompt_ids(tokenizer, prompts)
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row)
        mask[i, width - len(row):] = 1
    return ids, mask


def encode_responses(tokenizer, responses: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Response texts (EOS written as the token, if the response had one), right-padded: (ids, mask)."""
    rows = response_ids(tokenizer, responses)
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


def token_log_probs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log pi_T(a_t | s_t) = log_softmax(logits / T)[a_t] of the chosen tokens: (B, T). Responses sampled
    at temperature T came from pi_T, so their log-probs (old, new and the reference's, for the
    ratio and the KL) are taken at the same T, as TRL and OpenRLHF do."""
    return torch.log_softmax(logits.float() / temperature, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def anchor_log_probs(ref_logits: torch.Tensor, tokens: torch.Tensor, temperature: float,
                     ref_temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(log pi_SFT, log pi_SFT,tau) of the sampled tokens: SFT's at the sampling temperature T, and the KL
    anchor's, SFT sharpened by tau, softmax(z_SFT / (T tau)) (the same tensor at tau = 1): both (B, T)."""
    sft = token_log_probs(ref_logits, tokens, temperature)
    return sft, sft if ref_temperature == 1 else token_log_probs(ref_logits, tokens, temperature * ref_temperature)


# the final normalization before a tied output layer, by architecture (GPT-2, Llama/Mistral/Qwen, GPT-NeoX, OPT)
FINAL_NORMS = ("transformer.ln_f", "model.norm", "gpt_neox.final_layer_norm", "model.decoder.final_layer_norm")


def sharpen(lm: PreTrainedModel, temperature: float, flag: str) -> PreTrainedModel:
    """The causal LM with its logits divided by `temperature`, in place: sampled at T, it samples the
    original at T x temperature (the KL anchor softmax(z_SFT / tau) as a model of its own).

    logits = W h: an output layer of its own is scaled by 1 / tau; one tied to the input embedding
    (GPT-2) is left alone and the final normalization's affine weight and bias, which make h, are
    scaled instead. A probe checks the result, so an architecture where that is not the logits
    divided by tau (e.g. Gemma's norm scales by 1 + weight) is refused, never silently mis-scaled.
    """
    if temperature == 1:
        return lm
    was_training = lm.training
    probe = torch.arange(min(8, lm.config.vocab_size)).unsqueeze(0)
    with torch.no_grad():
        before = lm.eval()(probe).logits
        layer = lm.get_output_embeddings()
        if layer is not None and layer.weight is lm.get_input_embeddings().weight:  # tied: scale what makes h
            modules = dict(lm.named_modules())
            layer = next((modules[name] for name in FINAL_NORMS if name in modules), None)
        for parameter in (getattr(layer, "weight", None), getattr(layer, "bias", None)):
            if isinstance(parameter, torch.Tensor):
                parameter.mul_(1 / temperature)
        after = lm(probe).logits
    lm.train(was_training)
    if layer is None or not torch.allclose(after, before / temperature, rtol=1e-4, atol=1e-4):
        raise BellmaxError(f"{flag}: cannot start the policy at SFT sharpened to temperature {temperature:g}: "
                           f"dividing the logits of a {type(lm).__name__} by scaling its output layer or its "
                           f"final normalization is not supported; set --no-start-at-anchor (the policy then "
                           f"starts at SFT itself)")
    return lm


def entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """H[pi_T(. | s_t)] per position, of the distribution sampled at temperature T: (B, T)."""
    log_p = torch.log_softmax(logits.float() / temperature, -1)
    return -(log_p.exp() * log_p).sum(-1)


def response_logits(model: nn.Module, query: torch.Tensor, query_mask: torch.Tensor, response: torch.Tensor,
                    response_mask: torch.Tensor) -> torch.Tensor:
    """Logits (B, R, V) of a causal LM at the positions that predict each response token."""
    ids, mask = torch.cat([query, response], 1), torch.cat([query_mask, response_mask], 1)
    logits = model(ids, attention_mask=mask, position_ids=positions(mask)).logits
    return logits[:, query.shape[1] - 1: -1]


def response_log_likelihood(model: nn.Module, query: torch.Tensor, query_mask: torch.Tensor, response: torch.Tensor,
                            response_mask: torch.Tensor) -> torch.Tensor:
    """log pi(y | x) = sum_t log pi(y_t | x, y_<t) over each response's tokens (EOS included): (B,)."""
    log_probs = token_log_probs(response_logits(model, query, query_mask, response, response_mask), response)
    return (log_probs * response_mask).sum(1)


def sequence_log_probs(model: nn.Module, prompts: list[str], responses: list[str], tokenizer) -> torch.Tensor:
    """`response_log_likelihood` of text pairs (a response's EOS written out where it has one): (N,)."""
    query, query_mask = encode_prompts(tokenizer, prompts)
    response, response_mask = encode_responses(tokenizer, responses)
    return response_log_likelihood(model, query, query_mask, response, response_mask)


def last_real_token(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last column whose attention mask is 1, per row: (B,). Any padding, left, right
    or in between, is skipped."""
    columns = torch.arange(mask.shape[1], device=mask.device)
    return (columns * mask.bool()).argmax(-1)


def score_head(model: PreTrainedModel) -> nn.Linear:
    """The scalar head (`score`, a linear layer) of a sequence-classification model (GPT-2, Llama, Qwen, ...)."""
    head = getattr(model, "score", None)
    if not isinstance(head, nn.Linear):
        raise BellmaxError(f"the reward model ({type(model).__name__}) has no linear `score` head; use a causal-LM "
                           "architecture whose AutoModelForSequenceClassification has one (GPT-2, Llama, ...)")
    return head


def reward_scores(reward_model: PreTrainedModel, query: torch.Tensor, query_mask: torch.Tensor, response: torch.Tensor,
                  response_mask: torch.Tensor) -> torch.Tensor:
    """r_theta(x, y): the scalar head at the last token of prompt + response (the last attention-mask
    1 of each row), (B,). The position is gathered here from the mask: a sequence classifier's own
    pooling looks for the last token that is not the pad id, which misses a final EOS where pad = EOS
    (GPT-2's convention) and, in transformers releases before 2025, read left-padded rows wrongly."""
    ids, mask = torch.cat([query, response], 1), torch.cat([query_mask, response_mask], 1)
    hidden = reward_model.base_model(ids, attention_mask=mask, position_ids=positions(mask)).last_hidden_state
    last = hidden[torch.arange(len(ids)), last_real_token(mask)]  # (B, hidden)
    return score_head(reward_model)(last)[:, 0]
