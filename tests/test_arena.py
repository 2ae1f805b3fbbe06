"""`bellmax arena`: round robins between built-in agents and trained runs, the standings with
their intervals and ratings, the JSON and the heatmap, and one clear line for bad input."""

import json

import numpy as np
import pytest

from bellmax.arena import load_player, play_match, round_robin, standings
from bellmax.arena.ratings import bootstrap_interval, score_matrix
from bellmax.arena.tournament import MatchResult
from bellmax.cli import main

TINY_TRAINING = ["--total-steps", "128", "--num-envs", "4", "--n-steps", "32", "--batch-size", "64",
                 "--n-epochs", "1", "--eval-episodes", "0", "--no-progress", "--no-tensorboard"]


@pytest.fixture(scope="module")
def duel_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("arena") / "duel"
    assert main(["train", "ppo", "--env", "bellmax/BomberDuel-v0", "--run-dir", str(run_dir), *TINY_TRAINING]) == 0
    return run_dir


def test_a_trained_player_acts_as_its_run_evaluates_through_the_action_filter(duel_run):
    config_file = duel_run / "config.json"
    saved = config_file.read_text()
    evaluates_deterministically = json.loads(saved)["config"]["eval_deterministic"]
    player = load_player(str(duel_run))
    assert player.board == "duel" and player.opponent.action_filter
    assert player.opponent.deterministic == evaluates_deterministically
    assert not load_player(str(duel_run), deterministic=False).opponent.deterministic
    assert load_player(str(duel_run), deterministic=True).opponent.deterministic
    try:
        config = json.loads(saved)
        config["config"]["eval_deterministic"] = not evaluates_deterministically
        config_file.write_text(json.dumps(config))
        assert load_player(str(duel_run)).opponent.deterministic != evaluates_deterministically
    finally:
        config_file.write_text(saved)


def test_a_match_seats_the_players_alternately_and_counts_every_game():
    rule, random = load_player("rule"), load_player("random")
    result = play_match(rule, random, games=64, board="duel", seed=0)
    wins, draws, losses = result.counts
    assert wins + draws + losses == 64 and len(result.outcomes) == 64
    assert wins >= 48  # the rule-based agent beats a random one
    assert np.array_equal(play_match(rule, random, games=64, board="duel", seed=0).outcomes, result.outcomes)


def test_standings_score_draws_as_half_with_a_bootstrap_interval_and_rank_by_rating():
    results = [MatchResult("a", "b", np.array([1, 1, 1, 0, -1] * 20)), MatchResult("a", "c", np.array([1] * 100)),
               MatchResult("b", "c", np.array([1, -1] * 50))]
    table = standings(results)
    assert [s.player for s in table] == ["a", "b", "c"]
    a = table[0]
    assert (a.games, a.wins, a.draws, a.losses) == (200, 160, 20, 20) and a.score == pytest.approx(0.85)
    assert a.score_low < a.score < a.score_high and a.score_high - a.score_low < 0.12
    matrix = score_matrix(results, ["a", "b", "c"])
    assert matrix[0, 1] == pytest.approx(0.7) and matrix[1, 0] == pytest.approx(0.3) and np.isnan(matrix[0, 0])
    low, high = bootstrap_interval(np.ones(50), np.random.default_rng(0))
    assert low == high == 1.0


def test_arena_prints_a_table_and_writes_json_and_a_heatmap(duel_run, tmp_path, capsys):
    heatmap = tmp_path / "arena.png"
    code = main(["arena", str(duel_run), "rule", "filtered", "--games", "12", "--json", "-o", str(heatmap)])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["board"] == "duel" and heatmap.read_bytes()[:4] == b"\x89PNG"
    assert {(p["first"], p["second"]) for p in report["pairs"]} == {("duel", "rule"), ("duel", "filtered"),
                                                                   ("rule", "filtered")}
    assert all(p["first_wins"] + p["draws"] + p["second_wins"] == 12 for p in report["pairs"])
    assert {s["player"] for s in report["standings"]} == {"duel", "rule", "filtered"}
    assert main(["arena", "rule", "random", "--games", "8", "-o", str(heatmap)]) == 0
    out = capsys.readouterr().out
    assert "rule" in out and "score (95% CI)" in out and "rule vs random" in out


def test_eval_of_an_arena_run_saves_a_gif_of_a_game(duel_run, capsys):
    from PIL import Image

    assert main(["eval", str(duel_run), "--episodes", "2", "--json"]) == 0
    gif = json.loads(capsys.readouterr().out)["gif"]
    with Image.open(gif) as image:
        assert image.is_animated and image.n_frames >= 2


@pytest.mark.parametrize(("extra", "message"), [
    (["rule"], "at least two players"),
    (["rule", "smart"], "arena player 'smart' is neither a built-in agent"),
    (["rule", "rule"], "each player may appear once"),
    (["rule", "random", "--games", "0"], "--games 0 must be at least 1"),
    (["rule", "random", "--board", "huge"], "invalid choice: 'huge'"),
])
def test_bad_input_is_one_readable_line_and_exit_2(extra, message, capsys):
    assert main(["arena", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_checkpoint_from_another_board_is_refused(duel_run, tmp_path, capsys):
    cartpole = tmp_path / "cartpole"
    assert main(["train", "vpg", "--env", "CartPole-v1", "--run-dir", str(cartpole), "--total-steps", "200",
                 "--no-progress", "--no-tensorboard", "--eval-episodes", "0"]) == 0
    capsys.readouterr()
    assert main(["arena", str(duel_run), "rule", "--board", "ffa"]) == 2
    assert "made for the duel board" in capsys.readouterr().err
    assert main(["arena", str(cartpole), "rule"]) == 2
    assert "trained on CartPole-v1, not in the arena" in capsys.readouterr().err


def test_a_round_robin_plays_every_pair_once():
    players = [load_player(name) for name in ("random", "filtered", "rule")]
    results = round_robin(players, games=8, board="duel")
    assert [(r.first, r.second) for r in results] == [("random", "filtered"), ("random", "rule"), ("filtered", "rule")]


def test_against_puts_one_player_alone_against_a_built_in_agent_in_every_other_seat(capsys, tmp_path):
    from bellmax.arena import play_against

    rule, random = load_player("rule"), load_player("random")
    result = play_against(random, rule, games=32, board="ffa", seed=0)
    assert result.second == "3 x rule" and len(result.outcomes) == 32
    wins, draws, losses = result.counts
    assert wins <= 4 and losses >= 24  # a random player rarely outlives three rule agents
    duel = play_against(rule, random, games=32, board="duel", seed=0)
    assert duel.second == "random" and duel.counts[0] >= 24
    code = main(["arena", "filtered", "random", "--against", "rule", "--board", "ffa", "--games", "16", "--json",
                 "-o", str(tmp_path / "a.png")])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert {(p["first"], p["second"]) for p in report["pairs"]} == {("filtered", "3 x rule"), ("random", "3 x rule")}
    assert all(p["first_wins"] + p["draws"] + p["second_wins"] == 16 for p in report["pairs"])
    assert main(["arena", "rule", "--against", "smart"]) == 2
    assert "--against smart: a built-in agent" in capsys.readouterr().err
