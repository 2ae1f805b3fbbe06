"""Standings of a tournament: each player's wins, draws and losses, its score (draws count half)
with a bootstrap 95% confidence interval, and a rating from openskill's Thurstone-Mosteller model
(TrueSkill's) fitted to every game, with the conservative estimate mu - 3 sigma."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bellmax.arena.tournament import MatchResult

BOOTSTRAP_SAMPLES = 2000


@dataclass
class Standing:
    player: str
    games: int
    wins: int
    draws: int
    losses: int
    score: float  # (wins + draws / 2) / games
    score_low: float  # bootstrap 95% interval of the score
    score_high: float
    mu: float
    sigma: float

    @property
    def rating(self) -> float:
        """The conservative rating mu - 3 sigma (what the table is sorted by)."""
        return self.mu - 3 * self.sigma


def bootstrap_interval(points: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """95% percentile interval of the mean of `points`, resampling games with replacement."""
    if len(points) == 0:
        return float("nan"), float("nan")
    means = rng.choice(points, size=(BOOTSTRAP_SAMPLES, len(points)), replace=True).mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def fitted_ratings(results: list[MatchResult], seed: int = 0) -> dict[str, tuple[float, float]]:
    """(mu, sigma) per player from openskill's Thurstone-Mosteller model, updated game by game in a
    shuffled (seeded) order so the rating does not depend on which pair played first."""
    from openskill.models import ThurstoneMostellerFull

    model = ThurstoneMostellerFull()
    names = sorted({name for r in results for name in (r.first, r.second)})
    ratings = {name: model.rating(name=name) for name in names}
    games = [(r.first, r.second, int(o)) for r in results for o in r.outcomes]
    for index in np.random.default_rng(seed).permutation(len(games)):
        first, second, outcome = games[index]
        ranks = [0.0, 0.0] if outcome == 0 else ([0.0, 1.0] if outcome == 1 else [1.0, 0.0])
        [[ratings[first]], [ratings[second]]] = model.rate([[ratings[first]], [ratings[second]]], ranks=ranks)
    return {name: (float(rating.mu), float(rating.sigma)) for name, rating in ratings.items()}


def standings(results: list[MatchResult], seed: int = 0) -> list[Standing]:
    """Every player's record, score with its interval and rating, best rating first."""
    rng = np.random.default_rng(seed)
    points: dict[str, list[np.ndarray]] = {}
    for r in results:
        points.setdefault(r.first, []).append((r.outcomes + 1) / 2)  # win 1, draw 1/2, loss 0
        points.setdefault(r.second, []).append((1 - r.outcomes) / 2)
    ratings = fitted_ratings(results, seed)
    table = []
    for name, parts in points.items():
        scores = np.concatenate(parts)
        low, high = bootstrap_interval(scores, rng)
        table.append(Standing(name, len(scores), int((scores == 1).sum()), int((scores == 0.5).sum()),
                              int((scores == 0).sum()), float(scores.mean()), low, high, *ratings[name]))
    return sorted(table, key=lambda s: s.rating, reverse=True)


def score_matrix(results: list[MatchResult], names: list[str]) -> np.ndarray:
    """(P, P): the score of the row player against the column player (nan on the diagonal)."""
    index = {name: i for i, name in enumerate(names)}
    matrix = np.full((len(names), len(names)), np.nan)
    for r in results:
        score = float(((r.outcomes + 1) / 2).mean())
        matrix[index[r.first], index[r.second]] = score
        matrix[index[r.second], index[r.first]] = 1 - score
    return matrix
