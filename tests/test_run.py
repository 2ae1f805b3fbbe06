"""The run directory as its readers see it: TensorBoard after a resume, the progress bar, notices."""

import io

import bellmax.algos
from bellmax.algos import VPG, VPGConfig
from bellmax.core.run import CHECKPOINT_FILE, Run, read_metrics

CONFIG = VPGConfig(num_envs=2, n_steps=50, batch_size=50, total_steps=600, hidden_sizes=(8,), seed=1,
                   eval_episodes=0, checkpoint_every=200)


def test_after_a_resume_tensorboard_keeps_the_checkpointed_step_and_replaces_the_later_ones(tmp_path):
    """A run killed at step 300 after its checkpoint at 200 is resumed from 200: TensorBoard (read
    with TensorBoard's own EventAccumulator) holds every step once, 200 included, as metrics.jsonl does."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    agent = VPG(CONFIG)
    with Run(tmp_path, "vpg", CONFIG.to_dict()) as run:
        agent.learn(until_step=200, run=run)  # checkpoints at 200
    checkpoint_at_200 = (tmp_path / CHECKPOINT_FILE).read_bytes()
    with Run(tmp_path, "vpg", CONFIG.to_dict(), resume_step=200) as run:
        agent.learn(until_step=300, run=run)  # logs step 300 ...
    (tmp_path / CHECKPOINT_FILE).write_bytes(checkpoint_at_200)  # ... but is killed before its checkpoint
    resumed = bellmax.algos.load(tmp_path)
    with Run(tmp_path, "vpg", CONFIG.to_dict(), resume_step=resumed.global_step) as run:
        resumed.learn(run=run)
    steps = [row["step"] for row in read_metrics(tmp_path)]
    assert steps == [100, 200, 300, 400, 500, 600]
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    for tag in ("rollout/ep_return", "losses/loss_policy", "time/sps"):
        assert [e.step for e in events.Scalars(tag)] == steps, tag


def test_the_progress_bar_says_training_return_and_shows_an_eta(tmp_path):
    from rich.console import Console

    with Run(tmp_path, "vpg", CONFIG.to_dict(), tensorboard=False, progress=True) as run:
        run.start_progress(total_steps=1000, done_steps=0)
        run.update_progress(step=400, sps=1234.0, recent_return=87.5)
        out = io.StringIO()
        Console(file=out, width=80).print(run._progress.get_renderable())
    line = out.getvalue()
    assert "…" not in line  # fits 80 columns
    assert "400/1,000" in line and "1,234 steps/s" in line and "train return 87.5" in line and "eta" in line


def test_a_long_notice_above_the_progress_bar_is_never_broken_mid_word(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    path = "/a/very/long/run/directory/" + "x" * 90 + "/checkpoint.pt"
    with Run(tmp_path, "vpg", CONFIG.to_dict(), tensorboard=False, progress=True) as run:
        run.start_progress(total_steps=1000, done_steps=0)
        run.notify(f"SIGINT: checkpoint written to {path}; continue with --resume")
    captured = capsys.readouterr()
    assert path in captured.out + captured.err
