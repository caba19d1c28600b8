"""Folding BN into convolutions for inference gives the eval-mode logits."""

import pytest
import torch
from torch import nn

import resnetlab

FUSED_RELATIVE_TOLERANCE = 1e-5


def randomize_batchnorm_statistics(model):
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2), module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5), module.bias.uniform_(-0.2, 0.2)


@pytest.mark.parametrize("name, options", [
    ("resnet20", {}), ("resnet20", {"shortcut": "B"}), ("resnet56", {"shortcut": "C"}), ("preact_resnet164", {}),
    ("resnet18", {}), ("resnet50", {"stride_in_1x1": True}), ("preact_resnet50", {}), ("plain20", {}),
    ("resnet110", {"placement": "bn_after_add"}), ("resnet20", {"norm": "reference"}),
    ("resnet20", {"stochastic_depth": 0.5}),
])
def test_folded_model_gives_the_eval_logits(name, options):
    torch.manual_seed(0)
    model = resnetlab.create_model(name, **options)
    randomize_batchnorm_statistics(model)
    model.eval()
    size = 32 if resnetlab.get_model_spec(name).dataset == "cifar" else 64
    x = torch.randn(4, 3, size, size)
    with torch.no_grad():
        expected = model(x)
        fused = model.fuse_for_inference()
        out = fused(x)
    scale = expected.abs().max()
    assert (out - expected).abs().max() <= FUSED_RELATIVE_TOLERANCE * scale
    remaining = [m for m in fused.modules() if isinstance(m, (nn.BatchNorm2d, resnetlab.ReferenceBatchNorm2d))]
    if name.startswith("preact"):
        # Pre-activation BNs act before their conv; one per unit that pre-activates, plus the final BN.
        assert len(remaining) == sum(u.bn1 is not None for u in fused.residual_units()) + 1
    elif options.get("placement") == "bn_after_add":
        assert len(remaining) == len(list(fused.residual_units()))
    else:
        assert remaining == []  # every BN follows a convolution and folds
