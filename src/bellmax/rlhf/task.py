"""A synthetic instruction task with simulated human labelers.

Prompts are short instructions over words and digits, written as space-separated tokens and
ending in "=" (the response follows it):

    reverse : cat dog sun =      ->  sun dog cat
    sort : 3 1 2 =               ->  1 2 3
    repeat : red fish =          ->  red fish red fish
    count : cat cat dog =        ->  3

`good_response` writes the correct answer; `poor_response` writes the kinds of mistakes a weak
model makes (copying the input, shuffling, dropping or changing a token, rambling on, never
stopping), so a corpus can mix both; `padded_response` is a sloppy demonstration (the right answer
padded with filler words), as imperfect demonstrators write some of the time.

The hidden **gold labeler** `gold_score` plays the human rater whose judgement RLHF tries to
optimize; it is used only to evaluate. It gives partial credit per correct token in place,
subtracts 0.1 per token of padding beyond the answer (rambling), loses the credit of tokens cut
off (stopping early), and halves the score of a response that never emits the end-of-sequence
token. A policy that learned "longer is better" (or "shorter") is therefore caught by the gold score.

Training never sees the gold score: `LabelerPanel.rank` returns only a noisy ranking of K responses
with ties (as in the lecture's "D > C > A = B"), from which `comparisons` derives the C(K, 2) pairs.

A response is the text a policy generated: tokens separated by spaces; a response the policy
finished ends with the end-of-sequence token `EOS` ("<eos>"), one it did not finish lacks it. The
special tokens count wherever they stand, as the tokenizer reads them: " 1 2 3<eos>" (a completion
with the EOS appended, as TRL appends it) is the same response as "1 2 3 <eos>".
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from dataclasses import dataclass

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
WORDS = ("cat", "dog", "sun", "moon", "tree", "fish", "bird", "star", "ship", "red", "blue", "green")
DIGITS = tuple(str(d) for d in range(10))
FAMILIES = ("reverse", "sort", "repeat", "count")
SEPARATOR = "="


def vocabulary() -> list[str]:
    """Every non-special token the task can produce (the tokenizer is built from this list)."""
    return [*FAMILIES, ":", SEPARATOR, *WORDS, *DIGITS]


@dataclass(frozen=True)
class TaskConfig:
    """Sizes of the instruction families (the task's difficulty)."""

    min_items: int = 2
    """Fewest items in a list (count and reverse use words, sort uses digits)."""
    max_items: int = 6
    """Most items in a list (repeat uses at most half of it: its answer is twice as long)."""


def make_prompt(rng: random.Random, config: TaskConfig = TaskConfig()) -> str:
    """One instruction, e.g. 'sort : 3 1 2 ='."""
    family = rng.choice(FAMILIES)
    if family == "sort":
        items = [rng.choice(DIGITS) for _ in range(rng.randint(config.min_items, config.max_items))]
    elif family == "repeat":
        items = [rng.choice(WORDS) for _ in range(rng.randint(1, max(1, config.max_items // 2)))]
    elif family == "count":
        items = [rng.choice(WORDS[:3]) for _ in range(rng.randint(1, min(9, config.max_items + 2)))]
    else:
        items = [rng.choice(WORDS) for _ in range(rng.randint(config.min_items, config.max_items))]
    return " ".join([family, ":", *items, SEPARATOR])


def parse_prompt(prompt: str) -> tuple[str, list[str]]:
    """(family, items) of a prompt made by `make_prompt`; ValueError for anything else."""
    tokens = prompt.split()
    if len(tokens) < 3 or tokens[0] not in FAMILIES or tokens[1] != ":" or tokens[-1] != SEPARATOR:
        raise ValueError(f"not a task prompt: {prompt!r} (expected 'FAMILY : ITEMS... =', FAMILY in {FAMILIES})")
    return tokens[0], tokens[2:-1]


def is_task_prompt(prompt: str) -> bool:
    """Whether `prompt` is one of this task's (so the gold labeler can judge its answers)."""
    try:
        parse_prompt(prompt)
    except ValueError:
        return False
    return True


def answer(prompt: str) -> list[str]:
    """The correct response tokens (without EOS)."""
    family, items = parse_prompt(prompt)
    if family == "reverse":
        return items[::-1]
    if family == "sort":
        return sorted(items)
    if family == "repeat":
        return items + items
    return [str(len(items))]


def good_response(prompt: str) -> str:
    """The correct answer, as a demonstration's completion (no EOS: the trainer appends it)."""
    return " ".join(answer(prompt))


def padded_response(prompt: str, rng: random.Random) -> str:
    """The correct answer followed by 1-3 filler words (a sloppy demonstration; no EOS, like a completion)."""
    return " ".join(answer(prompt) + [rng.choice(WORDS) for _ in range(rng.randint(1, 3))])


def poor_response(prompt: str, rng: random.Random) -> str:
    """A plausible mistake, finished with EOS unless the mistake is not stopping."""
    _, items = parse_prompt(prompt)
    correct = answer(prompt)
    kind = rng.choice(("copy", "shuffle", "drop", "swap", "ramble", "no_stop"))
    if kind == "copy":
        tokens = list(items)
    elif kind == "shuffle":
        tokens = rng.sample(correct, len(correct))
    elif kind == "drop":
        tokens = correct[:-1] if len(correct) > 1 else [rng.choice(DIGITS)]
    elif kind == "swap":
        tokens = list(correct)
        tokens[rng.randrange(len(tokens))] = rng.choice(WORDS + DIGITS)
    elif kind == "ramble":
        tokens = correct + [rng.choice(WORDS + DIGITS) for _ in range(rng.randint(1, 4))]
    else:  # runs on without an end-of-sequence token
        return " ".join(correct + [rng.choice(WORDS) for _ in range(rng.randint(2, 5))])
    return " ".join([*tokens, EOS])


def _split_response(response: str) -> tuple[list[str], bool]:
    """(tokens before the first EOS, whether there was an EOS); padding is ignored."""
    tokens = response.replace(EOS, f" {EOS} ").replace(PAD, " ").split()
    if EOS in tokens:
        return tokens[: tokens.index(EOS)], True
    return tokens, False


PADDING_PENALTY = 0.1  # per token beyond the answer's length


def gold_score(prompt: str, response: str) -> float:
    """The hidden human judgement of `response`, in [0, 1]; 1 only for the exact answer plus EOS.

    score = max(0, sum_i credit_i / len(answer) - 0.1 * extra_tokens), halved without EOS, where
    credit_i is 1 for a token equal to the answer's token at position i (for counts: 1 - |error| / 3)
    and extra_tokens counts the tokens beyond the answer's length. Content comes first (a right
    answer with a word of padding, 0.9, beats an answer with one of three tokens wrong, 0.67), but
    every token of padding costs, and stopping early loses the missing tokens' credit.
    """
    correct = answer(prompt)
    tokens, finished = _split_response(response)
    if parse_prompt(prompt)[0] == "count":
        credit = [max(0.0, 1.0 - abs(int(t) - int(correct[0])) / 3) if t.isdigit() else 0.0 for t in tokens[:1]]
    else:
        credit = [1.0 if t == c else 0.0 for t, c in zip(tokens, correct)]
    extra = max(0, len(tokens) - len(correct))
    score = max(0.0, sum(credit) / len(correct) - PADDING_PENALTY * extra)
    return score if finished else 0.5 * score


@dataclass(frozen=True)
class LabelerPanel:
    """Simulated labelers: they perceive gold + N(0, noise^2) (the same for identical responses) and
    call two responses tied when the perceived scores differ by less than `tie_margin`. Only the
    ranking leaves this class."""

    noise: float = 0.1
    """Standard deviation of a labeler's error on the [0, 1] gold scale."""
    tie_margin: float = 0.05
    """Responses perceived closer than this get the same rank."""

    def rank(self, prompt: str, responses: list[str], rng: random.Random) -> list[int]:
        """Rank of each response (0 = best); tied responses share a rank, e.g. D > C > A = B -> [2, 2, 1, 0]."""
        # a labeler sees identical responses as identical: one perceived score per distinct text
        distinct = {r: gold_score(prompt, r) + rng.gauss(0.0, self.noise) for r in dict.fromkeys(responses)}
        perceived = [distinct[r] for r in responses]
        order = sorted(range(len(responses)), key=lambda i: -perceived[i])
        ranks = [0] * len(responses)
        leader = order[0]
        rank = 0
        for position, i in enumerate(order):
            if perceived[leader] - perceived[i] >= self.tie_margin:  # a new tie group starts here
                leader, rank = i, position
            ranks[i] = rank
        return ranks


def comparisons(ranks: list[int]) -> list[tuple[int, int]]:
    """(winner, loser) index pairs among the C(K, 2) pairs of a ranking; tied pairs carry no preference."""
    pairs = []
    for i, j in itertools.combinations(range(len(ranks)), 2):
        if ranks[i] < ranks[j]:
            pairs.append((i, j))
        elif ranks[j] < ranks[i]:
            pairs.append((j, i))
    return pairs


def win_outcomes(scores: list[float], baseline_scores: list[float]) -> list[float]:
    """Per prompt: 1 where `scores` beats the baseline's score, 0.5 for a tie, 0 where it loses."""
    if len(scores) != len(baseline_scores) or not scores:
        raise ValueError("a win rate needs two equally long, non-empty score lists")
    return [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(scores, baseline_scores)]


def win_rate(scores: list[float], baseline_scores: list[float]) -> float:
    """Fraction of prompts where `scores` beats the baseline's score, ties counted as half."""
    outcomes = win_outcomes(scores, baseline_scores)
    return sum(outcomes) / len(outcomes)


def win_rate_stderr(scores: list[float], baseline_scores: list[float]) -> float | None:
    """Standard error of `win_rate` over the prompts, s / sqrt(n) with s the sample standard deviation
    of the per-prompt outcomes (1, 0.5, 0); None for a single prompt. It measures the judgement's
    sampling noise on these prompts, not the spread from training another model."""
    outcomes = win_outcomes(scores, baseline_scores)
    return statistics.stdev(outcomes) / math.sqrt(len(outcomes)) if len(outcomes) > 1 else None
