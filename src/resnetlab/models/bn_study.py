"""A small CIFAR conv net for the batch-normalization study (Ioffe & Szegedy 2015).

Fig. 1 of the BN paper compares sigmoid MLPs with and without BN on MNIST, and Section 4.2.2 compares
Inception with and without BN, at several learning rates, with ReLU and sigmoid. `SmallConvNet` makes the
same comparison at small scale on CIFAR-10: one network whose only switches are the normalisation and the
activation, so the rows of the study (configs/batchnorm/) differ in nothing else.
"""

from __future__ import annotations

from torch import Tensor, nn

from resnetlab.layers.batchnorm import ReferenceBatchNorm2d
from resnetlab.models.registry import ModelSpec, register_model

NORMS = ("batch", "reference", "none")
ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid}
WIDTHS = (32, 64, 128)  # one per stage; two 3x3 convs each, 2x2 max pool after stages 1 and 2
IOFFE2015 = "Ioffe and Szegedy 2015, Batch Normalization"


def _check(option: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{option} must be one of {tuple(allowed)}, got {value!r}")


class ConvUnit(nn.Module):
    """3x3 conv (padding 1), then the norm layer (none: identity), then the activation."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, activation: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        if norm == "none":
            # Without BN the conv needs its bias (with BN, beta replaces it). Added after construction so
            # that building the conv draws the same random numbers in every variant; it starts at zero.
            self.conv.bias = nn.Parameter(self.conv.weight.new_zeros(out_channels))
        layer = {"batch": nn.BatchNorm2d, "reference": ReferenceBatchNorm2d}.get(norm)
        self.norm = layer(out_channels) if layer is not None else nn.Identity()
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x)))


class SmallConvNet(nn.Module):
    """Three stages of two conv units (widths 32, 64, 128) at 32, 16 and 8 px, global average pool, fc.

    Args:
        num_classes: outputs of the fc layer.
        norm: ``"batch"`` (``nn.BatchNorm2d``), ``"reference"`` (our from-scratch `ReferenceBatchNorm2d`)
            or ``"none"`` (the paper's un-normalised baseline).
        activation: ``"relu"`` or ``"sigmoid"`` (the paper's sigmoid rows).
        in_channels: channels of the input images.
    """

    stage_names = ("stage1", "stage2", "stage3")

    def __init__(self, *, num_classes: int = 10, norm: str = "batch", activation: str = "relu",
                 in_channels: int = 3) -> None:
        super().__init__()
        _check("norm", norm, NORMS)
        _check("activation", activation, ACTIVATIONS)
        widths_in = (in_channels, *WIDTHS[:-1])
        for name, c_in, c_out in zip(self.stage_names, widths_in, WIDTHS):
            setattr(self, name, nn.Sequential(ConvUnit(c_in, c_out, norm, activation),
                                              ConvUnit(c_out, c_out, norm, activation)))
        self.pool = nn.MaxPool2d(2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(WIDTHS[-1], num_classes)
        self._initialise()

    def _initialise(self) -> None:
        # The same initialisation for every variant, so that only the normalisation and the activation
        # differ between the rows of the study (a seed gives the same conv weights with and without BN):
        # He normal conv weights (fan-in), zero conv biases, BN gamma 1 and beta 0 (their own reset),
        # the fc at torch's default. He init suits ReLU, not sigmoid: the sigmoid rows keep it anyway.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @property
    def depth(self) -> int:
        """Weighted layers: two convs per stage and the fc."""
        return 2 * len(self.stage_names) + 1

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.stage1(x))
        x = self.pool(self.stage2(x))
        x = self.avgpool(self.stage3(x))
        return self.fc(x.flatten(1))


register_model(ModelSpec("bn_cnn", SmallConvNet, {}, "cifar", 7, IOFFE2015,
                         "small CIFAR conv net for the batch-norm study (norm, activation options)"))
