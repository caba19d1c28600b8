"""The first training steps of CIFAR ResNet-56 at the paper's learning rate 0.1: resnetlab's model against a
minimal independent implementation (a measurement, not a test).

Both nets start from the same seed and see the same batches of the CIFAR-10 JPEG copy (the paper's pipeline:
per-pixel mean, pad-4 crop and flip, SGD momentum 0.9, weight decay 1e-4, batch 128). The minimal net is written
here from the paper in plain PyTorch (option A shortcuts, He init, BN, ReLU after the addition), sharing no code
with resnetlab's models. Prints the machine and each step's training loss. If both losses climb far above chance
(ln 10 = 2.30) in the first steps, the early divergence seen in the reproductions is the recipe's, not a bug.

    .venv/bin/python benchmarks/first_steps.py --seed 1 --steps 25      # about a minute on 2 CPU cores
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg"
RECIPE = REPO / "configs" / "resnet" / "table6_cifar10_resnet56.yaml"


class MinimalBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.extra_channels = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x
        if self.extra_channels:  # option A: subsample by 2, pad the new channels with zeros
            half = self.extra_channels // 2
            shortcut = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, half, half))
        return F.relu(out + shortcut)


class MinimalResNet(nn.Module):
    def __init__(self, units_per_stage: int = 9) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        units, channels = [], 16
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            for index in range(units_per_stage):
                units.append(MinimalBlock(channels, width, stride if index == 0 else 1))
                channels = width
        self.units = nn.Sequential(*units)
        self.fc = nn.Linear(64, 10)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.units(F.relu(self.bn(self.conv(x)))), 1).flatten(1))


def first_losses(model: nn.Module, batches, steps: int) -> list[float]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model.train()
    losses = []
    for images, labels in batches:
        if len(losses) == steps:
            break
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def main() -> int:
    from resnetlab.config import load_config
    from resnetlab.data.datasets import build_data
    from resnetlab.models import create_model
    from resnetlab.training.environment import describe_machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CIFAR-10 as train/<class>/*.jpg, test/...")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()
    print(f"machine: {describe_machine()}")
    config = load_config(RECIPE, ["data.name=folder", f"data.root={args.data}", f"train.seed={args.seed}"])
    data = build_data(config.data, args.seed, config.train.batch_size)
    for name, build in (("resnetlab resnet56", lambda: create_model("resnet56")), ("minimal ResNet-56", MinimalResNet)):
        torch.manual_seed(args.seed)
        losses = first_losses(build(), data.train.batches(0, 0), args.steps)
        print(f"{name:<20} peak loss {max(losses):6.2f} at step {losses.index(max(losses)) + 1:>2}; losses: "
              + " ".join(f"{loss:.2f}" for loss in losses))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
