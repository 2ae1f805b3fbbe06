"""The Nature CNN's memory layout on the CPU: one DQN-shaped gradient step (two forward passes
without gradient for the targets, one forward and backward pass) on a batch of 32 stacks of 4
84x84 uint8 frames, with bellmax's NatureCNN in the channels-last layout it uses against the same
weights in PyTorch's default (contiguous NCHW) layout. Measurements alternate between the two in
one process, one torch thread; medians are reported.

    python benchmarks/cnn_layout.py [--repeats 7] [--steps 10]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from bellmax.core.nets import NatureCNN


class DefaultLayout(nn.Module):
    """A NatureCNN's weights in the contiguous layout, fed contiguous frames."""

    def __init__(self, cnn: NatureCNN):
        super().__init__()
        self.cnn = copy.deepcopy(cnn)
        self.cnn.net.to(memory_format=torch.contiguous_format)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.cnn.head(self.cnn.net(obs.float() / 255.0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="alternating measurements per layout")
    parser.add_argument("--steps", type=int, default=10, help="gradient steps per measurement")
    opts = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    channels_last = NatureCNN(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8))
    nets = {"channels-last (bellmax)": channels_last, "default NCHW": DefaultLayout(channels_last)}
    frames = torch.randint(0, 256, (32, 4, 84, 84), dtype=torch.uint8)
    difference = (nets["channels-last (bellmax)"](frames) - nets["default NCHW"](frames)).abs().max().item()

    def gradient_step(net: nn.Module) -> None:
        with torch.no_grad():  # the target network's and Double DQN's passes
            net(frames)
            net(frames)
        net(frames).sum().backward()

    times: dict[str, list[float]] = {name: [] for name in nets}
    for net in nets.values():
        gradient_step(net)  # warm-up
    for _ in range(opts.repeats):
        for name, net in nets.items():
            start = time.perf_counter()
            for _ in range(opts.steps):
                gradient_step(net)
            times[name].append(1e3 * (time.perf_counter() - start) / opts.steps)
    print(f"largest difference of the two layouts' outputs: {difference:.1e}")
    print("| layout | ms per gradient step, median | all measurements |\n|---|---|---|")
    for name, samples in times.items():
        print(f"| {name} | {statistics.median(samples):.1f} | {', '.join(f'{t:.1f}' for t in samples)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
