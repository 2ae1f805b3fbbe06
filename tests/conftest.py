import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`): the
    RLHF stages' numbers depend on the thread count, as their reports say."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def small_sft(tmp_path):
    """A small SFT model made in about 10 s for the slow learning tests of the RLHF methods (one or two
    items per task, so that it learns quickly): returns the directory holding its data/ and sft/."""
    import dataclasses

    from bellmax.rlhf import data
    from bellmax.rlhf.pipeline import preset
    from bellmax.rlhf.sft import run_pretrain, run_sft

    config = preset("test").with_seed()
    data.run_data(dataclasses.replace(config.data, corpus_size=3000, min_items=1, max_items=2, eval_prompts=256,
                                      good_fraction=0.05, sloppy_demo_fraction=0.7), tmp_path / "data")
    run_pretrain(dataclasses.replace(config.pretrain, steps=300), tmp_path / "data", tmp_path / "pretrain")
    run_sft(dataclasses.replace(config.sft, steps=100), tmp_path / "pretrain", tmp_path / "data", tmp_path / "sft")
    return tmp_path
