"""The RLHF workflow end to end with the `test` preset (tiny models, well under a minute), through
the command line: every stage writes its report, PPO raises the reward model's score, the same seed
gives the same numbers, and user mistakes are one readable line with exit status 2."""

import json
import math
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from bellmax.cli import main  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("rlhf") / "run"
    assert main(["rlhf", "run", "--preset", "test", "--run-dir", str(run_dir), "--seed", "3"]) == 0
    return run_dir


def test_run_writes_every_stage_and_the_summary(pipeline):
    report = json.loads((pipeline / "report.json").read_text())
    assert {"pretrained_vs_sft", "sft_vs_pretrained", "rl_vs_sft"} <= set(report["win_rates"])
    assert set(report["win_rate_stderr"]) == set(report["win_rates"])  # each win rate with its standard error
    assert 0 <= report["reward_model_accuracy"] <= 1 and report["kl_to_sft"] is not None
    assert report["seconds"] > 0 and report["seed"] == 3
    for stage in ("data", "pretrain", "sft", "compare", "reward", "ppo", "evaluate"):
        assert json.loads((pipeline / stage / "report.json").read_text())["stage"] == stage
    for stage in ("pretrain", "sft", "reward", "ppo"):  # Hugging Face model directories
        assert (pipeline / stage / "config.json").is_file() and (pipeline / stage / "model.safetensors").is_file()
    assert (pipeline / "evaluate" / "win_rates.png").stat().st_size > 1000
    assert (pipeline / "evaluate" / "training_curves.png").stat().st_size > 1000
    rankings = [json.loads(line) for line in (pipeline / "compare" / "rankings.jsonl").read_text().splitlines()]
    assert all(len(r["responses"]) == len(r["ranks"]) == 4 for r in rankings)
    comparisons = (pipeline / "compare" / "comparisons.jsonl").read_text().splitlines()
    assert set(json.loads(comparisons[0])) == {"prompt", "chosen", "rejected"}
    metrics = [json.loads(line) for line in (pipeline / "ppo" / "metrics.jsonl").read_text().splitlines()]
    assert {"objective/kl", "objective/scores", "rollout/response_length", "rollout/entropy", "losses/clip_fraction",
            "losses/explained_variance", "losses/loss_ptx", "gold/score"} <= set(metrics[-1])
    reward_metrics = (pipeline / "reward" / "metrics.jsonl").read_text().splitlines()
    assert {"eval/accuracy", "eval/margin"} <= set(json.loads(reward_metrics[-1]))
    # the run without the KL penalty: its own (shorter) number of iterations, judged beside the others
    no_kl = [json.loads(line) for line in (pipeline / "ppo_no_kl" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in no_kl] == [1, 2, 3]  # no_kl_iterations, not the ppo stage's 12
    assert {row["objective/kl_coef"] for row in no_kl} == {0.0}
    assert "rl_no_kl_vs_sft" in report["win_rates"]


def test_pipeline_settings_reach_every_stage():
    from bellmax.errors import ConfigError
    from bellmax.rlhf.pipeline import preset

    config = preset("test")
    config.seed, config.torch_threads = 7, 2
    stages = config.with_seed().stage_configs()
    assert {stage.seed for stage in stages.values()} == {7}
    threaded = {name for name, stage in stages.items() if getattr(stage, "torch_threads", None) == 2}
    assert threaded == set(stages) - {"data"}  # data runs no torch
    config.torch_threads = None  # each stage keeps its own
    assert {stage.torch_threads for stage in config.with_seed().stage_configs().values()
            if hasattr(stage, "torch_threads")} == {1}
    for field, value in (("torch_threads", 0), ("no_kl_iterations", 0)):
        bad = preset("test")
        setattr(bad, field, value)
        with pytest.raises(ConfigError, match=field):
            bad.validate()


def test_every_stage_logs_only_the_agreed_metric_names(pipeline):
    from bellmax.core.metrics import METRICS

    for stage in ("pretrain", "sft", "reward", "ppo"):
        keys = {key for line in (pipeline / stage / "metrics.jsonl").read_text().splitlines()
                for key in json.loads(line)} - {"step"}
        assert keys and keys <= set(METRICS), (stage, sorted(keys - set(METRICS)))


def test_ppo_raises_the_reward_model_score(pipeline):
    from bellmax.rlhf import data
    from bellmax.rlhf.evaluate import sample_answers
    from bellmax.rlhf.model import inference_only, load_causal_lm, load_reward_model
    from bellmax.rlhf.reward import score_texts

    prompts = [r["prompt"] for r in data.load(pipeline / "data", data.EVAL_PROMPTS).rows]
    reward_model, tokenizer = load_reward_model(pipeline / "reward")
    inference_only(reward_model)
    means = {}
    for name in ("sft", "ppo"):
        model, _ = load_causal_lm(pipeline / name)
        texts = sample_answers(model.eval(), tokenizer, prompts, seed=0, max_new_tokens=10)["texts"]
        with torch.no_grad():
            means[name] = float(score_texts(reward_model, tokenizer, prompts, texts).mean())
    std = reward_model.config.bellmax_reward_std
    assert means["ppo"] > means["sft"] + 0.25 * std, means


def test_same_seed_same_numbers(pipeline, tmp_path):
    args = ["rlhf", "ppo", "--preset", "test", "--model", str(pipeline / "sft"), "--reward-model",
            str(pipeline / "reward"), "--data", str(pipeline / "data"), "--seed", "3", "--iterations", "3"]
    assert main([*args, "--run-dir", str(tmp_path / "a")]) == 0
    assert main([*args, "--run-dir", str(tmp_path / "b")]) == 0
    rows = [[{k: v for k, v in json.loads(line).items() if not k.startswith("time/")}
             for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()] for name in "ab"]
    assert rows[0] == rows[1] and len(rows[0]) == 3


@pytest.mark.parametrize("args, message", [
    (["run", "--preset", "tinny", "--run-dir", "{tmp}/x"], "unknown RLHF preset 'tinny' (did you mean tiny?)"),
    (["sft", "--model", "{tmp}/nowhere", "--data", "{tmp}", "--run-dir", "{tmp}/x"], "--model {tmp}/nowhere does not"),
    (["ppo", "--kl-coef", "-1", "--model", "{tmp}", "--reward-model", "{tmp}", "--data", "{tmp}",
      "--run-dir", "{tmp}/x"], "invalid kl_coef=-1.0: must be >= 0 (set --kl-coef)"),
    (["run", "--ppo.clip-range", "2", "--run-dir", "{tmp}/x"], "invalid clip_range=2.0"),
    (["pretrain", "--data", "{tmp}", "--run-dir", "{tmp}/x"], "corpus.jsonl does not exist"),
    (["reward", "--model", "{tmp}", "--run-dir", "{tmp}/x"], "--comparisons DIR is required"),
    (["distill"], "unknown rlhf stage 'distill'"),
])
def test_user_mistakes_are_one_line_and_exit_status_2(args, message, tmp_path, capsys):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["rlhf", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message.replace("{tmp}", str(tmp_path)) in err
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_a_finished_run_dir_is_not_overwritten(pipeline, capsys):
    assert main(["rlhf", "run", "--preset", "test", "--run-dir", str(pipeline)]) == 2
    assert "already holds" in capsys.readouterr().err


def test_classic_commands_do_not_import_transformers():
    code = ("import sys; from bellmax.cli import main; main(['solve', 'gridworld']); "
            "assert 'transformers' not in sys.modules and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def mute_policy(source, directory):
    """The model at `source` changed to answer every prompt with EOS at once (gold score 0): its final
    hidden state is all ones, and EOS's output embedding makes EOS's logit 100 above any other's."""
    from bellmax.rlhf.model import load_causal_lm, save_pretrained

    model, tokenizer = load_causal_lm(source)
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.fill_(1.0)
        head = model.get_output_embeddings().weight
        head[tokenizer.eos_token_id] = head.sum(1).max() / head.shape[1] + 100.0 / head.shape[1]
    return save_pretrained(directory, model, tokenizer)


def test_a_policy_against_itself_wins_half_and_a_policy_that_never_answers_loses(pipeline, tmp_path, capsys):
    mute = mute_policy(pipeline / "sft", tmp_path / "mute")
    evaluate = ["rlhf", "evaluate", "--preset", "test", "--seed", "3", "--data", str(pipeline / "data")]
    # a deterministic policy against itself: every prompt is a tie, 0.5 exactly by the tie rule, with no spread
    assert main([*evaluate, "--sft", str(mute), "--rl", str(mute), "--run-dir", str(tmp_path / "self")]) == 0
    report = json.loads((tmp_path / "self" / "report.json").read_text())
    assert report["win_rates"]["rl_vs_sft"] == 0.5 and report["win_rates"]["sft_vs_sft"] == 0.5
    assert report["win_rate_stderr"] == {"sft_vs_sft": 0.0, "rl_vs_sft": 0.0}
    assert "rl_vs_sft 0.500 +- 0.000" in capsys.readouterr().out
    assert report["policies"]["rl"]["gold_score"] == 0.0 and report["policies"]["rl"]["response_length"] == 1.0
    # SFT against it: ties where SFT scores 0 too, wins wherever SFT earns any credit
    assert main([*evaluate, "--sft", str(pipeline / "sft"), "--rl", str(mute), "--run-dir",
                 str(tmp_path / "sft")]) == 0
    report = json.loads((tmp_path / "sft" / "report.json").read_text())
    assert report["policies"]["sft"]["gold_score"] > 0
    assert report["win_rates"]["rl_vs_sft"] < 0.45  # i.e. SFT's win rate against the mute policy is above 0.55
    # the mute policy ties (0.5) where SFT scores 0 too and loses (0) elsewhere: with q = 2 w the share of
    # ties, the outcomes' sample variance is (q / 4 - w^2) n / (n - 1), and the standard error its root over n
    n, w = report["prompts"], report["win_rates"]["rl_vs_sft"]
    assert report["win_rate_stderr"]["rl_vs_sft"] == pytest.approx(math.sqrt((2 * w / 4 - w * w) / (n - 1)))
    assert report["win_rate_stderr"]["rl_vs_sft"] > 0
    assert report["policies"]["rl"]["kl_to_sft"] > 0


def test_a_policys_win_rate_does_not_depend_on_which_others_are_evaluated(pipeline, tmp_path):
    # each policy samples with a seed from its own name: evaluating the RL policy alone gives the
    # same win rate as in the full run, where the pretrained model was evaluated before it
    full = json.loads((pipeline / "evaluate" / "report.json").read_text())["win_rates"]
    alone = tmp_path / "alone"
    assert main(["rlhf", "evaluate", "--preset", "test", "--seed", "3", "--sft", str(pipeline / "sft"),
                 "--data", str(pipeline / "data"), "--rl", str(pipeline / "ppo"), "--run-dir", str(alone)]) == 0
    assert json.loads((alone / "report.json").read_text())["win_rates"]["rl_vs_sft"] == full["rl_vs_sft"]


def test_evaluate_judges_sft_at_a_lower_temperature_beside_the_policies_without_moving_their_numbers(
        pipeline, tmp_path, monkeypatch):
    import dataclasses

    from bellmax.rlhf import evaluate
    from bellmax.rlhf.compare_algos import seed_measures
    from bellmax.rlhf.pipeline import preset

    drawn: dict[str, float] = {}
    monkeypatch.setattr(evaluate, "plot_win_rates", lambda rates, output, stderr=None: drawn.update(rates) or output)
    config = preset("test").evaluate
    policies = {"rl": pipeline / "ppo"}
    plain = evaluate.run_evaluate(config, pipeline / "sft", policies, pipeline / "data", tmp_path / "plain")
    assert "sft_sharpened_vs_sft" not in plain["win_rates"] and plain["sharpened_sft_temperature"] is None
    sharp = evaluate.run_evaluate(dataclasses.replace(config, sharpened_sft=0.5), pipeline / "sft", policies,
                                  pipeline / "data", tmp_path / "sharp")
    assert sharp["sharpened_sft_temperature"] == 0.5 and "SFT, T=0.5" in drawn
    assert sharp["policies"]["sft_sharpened"]["kl_to_sft"] > 0  # SFT at T 0.5 against SFT at T 1
    for key in ("rl_vs_sft", "sft_vs_sft"):  # the baseline has its own sampling seed: the others' answers are kept
        assert sharp["win_rates"][key] == plain["win_rates"][key]
    # at the evaluation's own temperature the "sharpened" SFT is SFT: a KL of exactly 0
    same = evaluate.run_evaluate(dataclasses.replace(config, sharpened_sft=1.0), pipeline / "sft", policies,
                                 pipeline / "data", tmp_path / "same")
    assert same["policies"]["sft_sharpened"]["kl_to_sft"] == 0.0
    # compare-algos shows it as a reference row (no training: 0 seconds) when the seed's evaluation has it
    seed_dir = tmp_path / "seed"
    (seed_dir / "evaluate").mkdir(parents=True)
    names = {"rl": "ppo", "rloo": "rloo", "grpo": "grpo", "reinforce_pp": "reinforce_pp", "dpo": "dpo", "rs": "rs"}
    sharp["policies"].update({name: sharp["policies"]["rl"] for name in names})
    (seed_dir / "evaluate" / "report.json").write_text(json.dumps(sharp))
    (seed_dir / "report.json").write_text(json.dumps({
        "win_rates": {**sharp["win_rates"], **{f"{name}_vs_sft": 0.6 for name in names}},
        "stage_seconds": {stage: 1.0 for stage in names.values()}}))
    rows = seed_measures(seed_dir)
    assert list(rows)[0] == "SFT, T=0.5"
    assert rows["SFT, T=0.5"] == {"win_rate": sharp["win_rates"]["sft_sharpened_vs_sft"], "seconds": 0.0,
                                  "kl_to_sft": sharp["policies"]["sft_sharpened"]["kl_to_sft"],
                                  "response_length": sharp["policies"]["sft_sharpened"]["response_length"]}


def test_win_rate_figure_gives_each_of_many_bars_its_own_colour(tmp_path, monkeypatch):
    import bellmax.plotting
    from bellmax.rlhf.evaluate import plot_win_rates

    drawn = {}

    def keep(fig, output):
        drawn["fig"] = fig
        return output

    monkeypatch.setattr(bellmax.plotting, "save_figure", keep)
    names = ["SFT", "SFT, T=0.5", "RL (PPO)", "RL, no KL", "RLOO", "GRPO", "REINFORCE++", "DPO", "RS"]
    plot_win_rates({name: 0.5 + i / 40 for i, name in enumerate(names)}, tmp_path / "w.png")
    ax = drawn["fig"].axes[0]
    colours = [tuple(bar.get_facecolor()) for bar in ax.patches]
    assert len(colours) == len(names) == len(set(colours))  # nine bars, nine colours: no two methods alike
    assert [label.get_text() for label in ax.get_xticklabels()] == names
    assert ax.get_xticklabels()[0].get_rotation() == 30  # many long labels are turned so they do not overlap
