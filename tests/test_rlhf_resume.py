"""A killed RLHF stage continues from its run directory's checkpoints bit for bit: the resumed stage
writes the same model.safetensors bytes and the same metrics as the stage that was never stopped.

Each kill is real: the stage raises inside its loop a few steps after a checkpoint (or gets a
SIGINT there), so the resume repeats the lost steps under the same learning-rate schedule."""

import itertools
import json
import os
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from bellmax.cli import main  # noqa: E402
from bellmax.errors import BellmaxError  # noqa: E402
from bellmax.rlhf import dpo, group, ppo, reward, rs, sft  # noqa: E402
from bellmax.rlhf.pipeline import preset, run_pipeline  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class Killed(Exception):
    """What a kill -9 leaves behind, raised where the stage was when it came."""


@contextmanager
def killed_at(monkeypatch, module, name: str, call: int, action=None):
    """Make the `call`-th call of module.name die (or, with `action`, run it first and go on)."""
    original = getattr(module, name)
    calls = itertools.count(1)

    def hooked(*args, **kwargs):
        if next(calls) == call:
            if action is None:
                raise Killed(f"{name} call {call}")
            action()
        return original(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(module, name, hooked)
        yield


def small_pipeline(seed: int = 4):
    """The test preset made smaller still: every stage in a few seconds."""
    config = preset("test")
    config.seed = seed
    config.no_kl_baseline = False
    config.pretrain.steps, config.pretrain.log_every = 40, 10
    config.sft.steps, config.sft.log_every = 20, 10
    config.ppo.iterations, config.ppo.checkpoint_every = 4, 2
    config.evaluate.prompts = 32
    return config


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """An uninterrupted pipeline: the reference, and the inputs of the stage tests."""
    run_dir = tmp_path_factory.mktemp("resume") / "base"
    run_pipeline(small_pipeline(), run_dir, log=lambda line: None)
    return run_dir


def weights(run_dir: Path) -> bytes:
    return (run_dir / "model.safetensors").read_bytes()


def metric_rows(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def checkpoint_files(run_dir: Path, pattern: str = "checkpoint*.pt") -> list[str]:
    return sorted(p.name for p in run_dir.glob(pattern))


def assert_same_run(resumed: Path, uninterrupted: Path) -> None:
    assert weights(resumed) == weights(uninterrupted)
    assert metric_rows(resumed) == metric_rows(uninterrupted)  # every row once, none lost, none doubled
    assert checkpoint_files(resumed) == []  # a finished stage is a plain model directory


# -- each stage, killed and resumed -------------------------------------------------------------------
def pretrain_config(**changes):
    config = preset("test").pretrain
    config.steps, config.log_every, config.checkpoint_every = 30, 6, 10  # the log at 24 averages steps 19-24
    for key, value in changes.items():
        setattr(config, key, value)
    return config


def test_pretrain_killed_after_a_checkpoint_resumes_to_the_same_bytes(base, tmp_path, monkeypatch):
    config = pretrain_config()
    sft.run_pretrain(config, base / "data", tmp_path / "a")
    with killed_at(monkeypatch, sft, "clip_grad_norm", 25), pytest.raises(Killed):  # in step 25 of 30
        sft.run_pretrain(config, base / "data", tmp_path / "b")
    assert checkpoint_files(tmp_path / "b") == ["checkpoint-10.pt", "checkpoint-20.pt", "checkpoint.pt"]
    assert metric_rows(tmp_path / "b")[-1]["step"] == 24  # logged after the checkpoint, before the kill: ...
    sft.run_pretrain(config, base / "data", tmp_path / "b", resume=True)
    assert_same_run(tmp_path / "b", tmp_path / "a")  # ... that row is not there twice
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["final_loss"] == json.loads((tmp_path / "a" / "report.json").read_text())["final_loss"]


def test_sft_shares_pretrainings_resumable_loop(base, tmp_path, monkeypatch):
    config = preset("test").sft
    config.steps, config.log_every, config.checkpoint_every = 12, 4, 5
    sft.run_sft(config, base / "pretrain", base / "data", tmp_path / "a")
    with killed_at(monkeypatch, sft, "clip_grad_norm", 8), pytest.raises(Killed):
        sft.run_sft(config, base / "pretrain", base / "data", tmp_path / "b")
    sft.run_sft(config, base / "pretrain", base / "data", tmp_path / "b", resume=True)
    assert_same_run(tmp_path / "b", tmp_path / "a")


def test_reward_killed_in_its_second_epoch_resumes_with_that_epochs_order(base, tmp_path, monkeypatch):
    config = preset("test").reward
    config.epochs, config.prompts_per_batch, config.log_every, config.checkpoint_every = 2, 8, 3, 4
    report = reward.run_reward(config, base / "sft", base / "compare", tmp_path / "a")
    steps_per_epoch = report["steps"] // 2
    kill = 4 * (steps_per_epoch // 4 + 1) + 2  # two steps after the first checkpoint of the second epoch
    assert steps_per_epoch < kill - 2 < kill < report["steps"]
    with killed_at(monkeypatch, reward, "clip_grad_norm", kill), pytest.raises(Killed):
        reward.run_reward(config, base / "sft", base / "compare", tmp_path / "b")
    resumed = reward.run_reward(config, base / "sft", base / "compare", tmp_path / "b", resume=True)
    assert_same_run(tmp_path / "b", tmp_path / "a")
    for key in ("held_out_accuracy", "reward_mean", "reward_std", "steps"):
        assert resumed[key] == report[key]


def test_ppo_resumes_policy_critic_optimizer_kl_controller_and_every_generator(base, tmp_path, monkeypatch):
    config = preset("test").ppo
    config.iterations, config.checkpoint_every = 5, 2
    config.adaptive_kl, config.target_kl, config.kl_horizon = True, 0.5, 100  # beta moves: it must be restored
    assert config.ptx_coef > 0 and config.value_model == "reward"  # ptx batches and a critic to restore too
    args = (base / "sft", base / "reward", base / "data")
    a = ppo.run_ppo(config, *args, tmp_path / "a")
    assert a["final_kl_coef"] != config.kl_coef
    with killed_at(monkeypatch, ppo, "ppo_update", 4), pytest.raises(Killed):  # in iteration 4, after checkpoint 2
        ppo.run_ppo(config, *args, tmp_path / "b")
    b = ppo.run_ppo(config, *args, tmp_path / "b", resume=True)
    assert_same_run(tmp_path / "b", tmp_path / "a")
    assert (b["final_kl_coef"], b["first"], b["last"]) == (a["final_kl_coef"], a["first"], a["last"])


def test_a_critic_free_rl_stage_resumes_to_the_same_bytes(base, tmp_path, monkeypatch):
    config = preset("test").rl
    config.algo, config.iterations, config.checkpoint_every = "grpo", 4, 2
    config.ref_temperature = 0.5  # the policy starts at the sharpened anchor; a resume takes the checkpoint's weights
    args = (base / "sft", base / "reward", base / "data")
    a = group.run_rl(config, *args, tmp_path / "a")
    with killed_at(monkeypatch, group, "group_update", 4), pytest.raises(Killed):
        group.run_rl(config, *args, tmp_path / "b")
    b = group.run_rl(config, *args, tmp_path / "b", resume=True)
    assert_same_run(tmp_path / "b", tmp_path / "a")
    assert b["first"] == a["first"]  # the first iteration ran before the kill; its record came back


def test_dpo_killed_in_its_second_epoch_resumes_to_the_same_bytes(base, tmp_path, monkeypatch):
    config = preset("test").dpo
    config.epochs, config.log_every, config.checkpoint_every, config.eval_prompts = 2, 3, 4, 8
    a = dpo.run_dpo(config, base / "sft", base / "compare", tmp_path / "a")
    kill = 4 * (a["steps"] // 2 // 4 + 1) + 1
    assert a["steps"] // 2 < kill - 1 < kill <= a["steps"]
    with killed_at(monkeypatch, dpo, "clip_grad_norm", kill), pytest.raises(Killed):
        dpo.run_dpo(config, base / "sft", base / "compare", tmp_path / "b")
    b = dpo.run_dpo(config, base / "sft", base / "compare", tmp_path / "b", resume=True)
    assert_same_run(tmp_path / "b", tmp_path / "a")
    assert b["held_out_accuracy"] == a["held_out_accuracy"]


def test_rs_killed_while_fine_tuning_resumes_on_the_picks_it_wrote_to_the_same_bytes(base, tmp_path, monkeypatch):
    config = preset("test").rs
    config.steps, config.checkpoint_every = 12, 5
    args = (base / "sft", base / "reward", base / "data")
    a = rs.run_rs(config, *args, tmp_path / "a")
    with killed_at(monkeypatch, sft, "clip_grad_norm", 8), pytest.raises(Killed):  # in step 8 of 12
        rs.run_rs(config, *args, tmp_path / "b")
    assert checkpoint_files(tmp_path / "b") == ["checkpoint-5.pt", "checkpoint.pt"]
    with monkeypatch.context() as patch:  # the resume fine-tunes on the picks on disk: it samples nothing
        patch.setattr(rs, "best_of_n", lambda *args: pytest.fail("the resume sampled the picks again"))
        b = rs.run_rs(config, *args, tmp_path / "b", resume=True)
    assert_same_run(tmp_path / "b", tmp_path / "a")
    assert (tmp_path / "b" / "best_of_n.jsonl").read_bytes() == (tmp_path / "a" / "best_of_n.jsonl").read_bytes()
    assert {k: v for k, v in b.items() if k not in ("seconds", "train_seconds", "tokens_per_s")} == \
        {k: v for k, v in a.items() if k not in ("seconds", "train_seconds", "tokens_per_s")}


# -- through the command line -------------------------------------------------------------------------
def pretrain_args(base, run_dir, *more):
    return ["rlhf", "pretrain", "--preset", "test", "--data", str(base / "data"), "--steps", "30",
            "--log-every", "5", "--checkpoint-every", "10", "--run-dir", str(run_dir), *more]


@pytest.fixture(scope="module")
def uninterrupted_pretrain(base, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pretrain") / "a"
    assert main(pretrain_args(base, run_dir)) == 0
    return run_dir


def test_ctrl_c_checkpoints_the_step_it_stopped_and_the_resume_hint_continues_it(
        base, uninterrupted_pretrain, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "b"
    with killed_at(monkeypatch, sft, "clip_grad_norm", 13, action=lambda: os.kill(os.getpid(), signal.SIGINT)):
        assert main(pretrain_args(base, run_dir)) == 128 + signal.SIGINT
    err = capsys.readouterr().err
    assert f"stopped by SIGINT at step 13: checkpoint saved; continue with `bellmax rlhf pretrain --resume {run_dir}`" \
        in err
    assert checkpoint_files(run_dir) == ["checkpoint-10.pt", "checkpoint-13.pt", "checkpoint.pt"]
    assert main(["rlhf", "pretrain", "--resume", str(run_dir)]) == 0
    assert f"resuming pretrain in {run_dir} from its newest checkpoint (step 13)" in capsys.readouterr().err
    assert_same_run(run_dir, uninterrupted_pretrain)


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(base, uninterrupted_pretrain, tmp_path,
                                                                  monkeypatch, capsys):
    run_dir = tmp_path / "b"
    with killed_at(monkeypatch, sft, "clip_grad_norm", 25), pytest.raises(Killed):
        main(pretrain_args(base, run_dir))
    newest = run_dir / "checkpoint-20.pt"
    content = bytearray(newest.read_bytes())
    content[len(content) // 2] ^= 0xFF
    newest.write_bytes(bytes(content))  # checkpoint.pt is a second name of it: damaged too
    assert main(["rlhf", "pretrain", "--resume", str(run_dir)]) == 0
    err = capsys.readouterr().err
    assert f"checkpoint {run_dir / 'checkpoint.pt'} is damaged" in err
    assert "resuming from checkpoint-10.pt instead, the newest valid checkpoint (step 10)" in err
    assert_same_run(run_dir, uninterrupted_pretrain)  # from step 10: the same bytes all the same
    assert checkpoint_files(run_dir, "*.damaged") == ["checkpoint-20.pt.damaged"]  # set aside, for inspection


def test_no_valid_checkpoint_is_one_line(base, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "b"
    with killed_at(monkeypatch, sft, "clip_grad_norm", 15), pytest.raises(Killed):
        main(pretrain_args(base, run_dir))
    (run_dir / "checkpoint-10.pt").write_bytes(b"not a checkpoint")
    (run_dir / "checkpoint.pt").unlink()
    assert main(["rlhf", "pretrain", "--resume", str(run_dir)]) == 2
    notice, error = capsys.readouterr().err.splitlines()
    assert notice.startswith(f"resuming pretrain in {run_dir}")
    assert error.startswith(f"error: checkpoint {run_dir / 'checkpoint-10.pt'} is damaged or not a checkpoint")


def test_resume_before_the_first_checkpoint_starts_again_with_the_saved_config(base, uninterrupted_pretrain,
                                                                              tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "b"
    with killed_at(monkeypatch, sft, "clip_grad_norm", 7), pytest.raises(Killed):
        main(pretrain_args(base, run_dir))
    assert checkpoint_files(run_dir) == [] and metric_rows(run_dir)[-1]["step"] == 5
    assert main(["rlhf", "pretrain", "--resume", str(run_dir)]) == 0
    assert "has no checkpoint (it stopped before its first one): running pretrain again" in capsys.readouterr().err
    assert_same_run(run_dir, uninterrupted_pretrain)


def test_a_second_start_into_an_unfinished_stage_names_the_resume_command(base, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "b"
    with killed_at(monkeypatch, sft, "clip_grad_norm", 15), pytest.raises(Killed):
        main(pretrain_args(base, run_dir))
    assert main(pretrain_args(base, run_dir)) == 2
    assert capsys.readouterr().err == (f"error: {run_dir} holds an unfinished pretrain (checkpoint at step 10): "
                                       f"continue it with `bellmax rlhf pretrain --resume {run_dir}`, or pick "
                                       "another --run-dir\n")
    with pytest.raises(BellmaxError, match="holds an unfinished pretrain"):  # the library refuses it too
        sft.run_pretrain(pretrain_config(log_every=5), base / "data", run_dir)
    with pytest.raises(BellmaxError, match=r"checkpointed with another pretrain config \(steps 30 -> 50\)"):
        sft.run_pretrain(pretrain_config(log_every=5, steps=50), base / "data", run_dir, resume=True)


@pytest.mark.parametrize("args, message", [
    (["pretrain", "--resume", "{base}/pretrain"], None),  # finished: said, exit 0
    (["run", "--resume", "{base}"], None),
    (["pretrain", "--resume", "{tmp}/nowhere"], "--resume {tmp}/nowhere: no such directory"),
    (["pretrain", "--resume", "{tmp}"], "{tmp} holds no pretrain to resume (no run_config.json)"),
    (["sft", "--resume", "{base}/pretrain"], "holds a pretrain stage, not sft: resume it with `bellmax rlhf pretrain"),
    (["pretrain", "--resume", "{base}/pretrain", "--steps", "50"], "leave out --steps"),
    (["pretrain", "--resume", "{base}/pretrain", "--data", "{base}/data"], "leave out --data"),
    (["compare", "--resume", "{base}/compare"], "the compare stage keeps no checkpoints"),
    (["run", "--resume", "{base}/pretrain"], "holds no RLHF pipeline to resume (no pipeline_config.json)"),
    (["run", "--run-dir", "{base}"], "already holds a finished run"),
    (["ppo", "--checkpoint-every", "-1", "--run-dir", "{tmp}/x"], "invalid checkpoint_every=-1"),
    (["reward", "--keep-checkpoints", "0", "--run-dir", "{tmp}/x"], "invalid keep_checkpoints=0"),
])
def test_resume_messages(base, tmp_path, capsys, args, message):
    args = [a.replace("{base}", str(base)).replace("{tmp}", str(tmp_path)) for a in args]
    code = main(["rlhf", *args])
    err = capsys.readouterr().err
    if message is None:
        assert code == 0 and f"{args[2]} is finished" in err and "nothing to resume" in err
    else:
        message = message.replace("{base}", str(base)).replace("{tmp}", str(tmp_path))
        assert code == 2 and err.count("\n") == 1 and message in err, err


# -- the pipeline -------------------------------------------------------------------------------------
def test_pipeline_stopped_in_ppo_resumes_there_and_keeps_the_finished_stages(base, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    with killed_at(monkeypatch, ppo, "ppo_update", 3, action=lambda: os.kill(os.getpid(), signal.SIGINT)):
        with pytest.raises(KeyboardInterrupt, match=f"continue with `bellmax rlhf run --resume {run_dir}`"):
            run_pipeline(small_pipeline(), run_dir, log=lambda line: None)
    assert checkpoint_files(run_dir / "ppo") == ["checkpoint-2.pt", "checkpoint-3.pt", "checkpoint.pt"]
    assert main(["rlhf", "run", "--preset", "test", "--run-dir", str(run_dir)]) == 2
    assert f"holds an unfinished RLHF pipeline: continue it with `bellmax rlhf run --resume {run_dir}`" \
        in capsys.readouterr().err
    finished = {stage: (run_dir / stage / "report.json").stat().st_mtime_ns
                for stage in ("data", "pretrain", "sft", "compare", "reward")}
    for module, name in ((sft, "run_pretrain"), (sft, "run_sft"), (reward, "run_reward"), (reward, "run_compare")):
        monkeypatch.setattr(module, name, lambda *args, **kwargs: pytest.fail("a finished stage ran again"))
    assert main(["rlhf", "run", "--resume", str(run_dir)]) == 0
    err = capsys.readouterr().err
    assert "pretrain: finished before" in err and "ppo: resuming from its checkpoint at step 3" in err
    assert {stage: (run_dir / stage / "report.json").stat().st_mtime_ns for stage in finished} == finished
    assert_same_run(run_dir / "ppo", base / "ppo")
    report, expected = (json.loads((d / "report.json").read_text()) for d in (run_dir, base))
    assert report["win_rates"] == expected["win_rates"] and report["gold_scores"] == expected["gold_scores"]
    assert set(report["stage_seconds"]) == set(expected["stage_seconds"])
    saved = json.loads((run_dir / "pipeline_config.json").read_text())["config"]
    assert saved["ppo"]["iterations"] == 4 and saved["seed"] == 4  # the settings it started with
