"""The whole registry runs forward and backward; eval is deterministic; models pickle; options are honoured."""

import copy
import io
import pickle

import pytest
import torch
from torch import nn

import resnetlab
from paper_facts import BATCHNORM_FLOAT32_TOLERANCE
from resnetlab.layers.batchnorm import ReferenceBatchNorm2d
from resnetlab.layers.shortcuts import ZeroPadShortcut

# Small inputs keep the whole registry fast on 2 cores: CIFAR nets at 16 px (3 stages), ImageNet at 64 px.
SMALL_INPUT = {"cifar": 16, "imagenet": 64}


def small_input(name, batch=2):
    return torch.randn(batch, 3, SMALL_INPUT[resnetlab.get_model_spec(name).dataset], SMALL_INPUT[
        resnetlab.get_model_spec(name).dataset])


@pytest.mark.parametrize("name", resnetlab.list_models())
def test_forward_and_backward_over_the_registry(name):
    torch.manual_seed(0)
    model = resnetlab.create_model(name, num_classes=7)
    out = model(small_input(name))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.logsumexp(1).mean().backward()
    missing = [k for k, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
    model.eval()
    x = small_input(name)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # eval mode is deterministic


def test_default_classes_follow_the_dataset():
    assert resnetlab.create_model("resnet20").fc.out_features == 10
    assert resnetlab.create_model("resnet18").fc.out_features == 1000
    assert resnetlab.create_model("resnet20", num_classes=100).fc.out_features == 100


@pytest.mark.parametrize("name", ["resnet20", "resnet110"])
def test_option_a_models_pickle_and_deepcopy(name):
    model = resnetlab.create_model(name).eval()
    assert any(isinstance(m, ZeroPadShortcut) for m in model.modules())
    x = torch.randn(1, 3, 32, 32)
    buffer = io.BytesIO()
    torch.save(model, buffer)  # whole-module pickle: fails on a lambda shortcut
    clone = pickle.loads(pickle.dumps(model))
    with torch.no_grad():
        assert torch.equal(clone(x), model(x))
        assert torch.equal(copy.deepcopy(model)(x), model(x))


def test_zero_pad_shortcut_subsamples_and_pads():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    out = ZeroPadShortcut(2, 5, stride=2)(x)
    assert out.shape == (1, 5, 2, 2)
    assert torch.equal(out[:, :2], x[:, :, ::2, ::2]) and torch.all(out[:, 2:] == 0)
    avg = ZeroPadShortcut(2, 4, stride=2, pool="avg")(x)
    assert torch.allclose(avg[0, 0, 0, 0], x[0, 0, :2, :2].mean())


@pytest.mark.parametrize("name", ["resnet20", "resnet50", "preact_resnet164", "preact_resnet18"])
def test_zero_init_residual_makes_every_unit_start_as_the_identity(name):
    torch.manual_seed(0)
    model = resnetlab.create_model(name, zero_init_residual=True).eval()
    units = list(model.residual_units())
    norms = [u.last_branch_norm() for u in units]
    assert all(torch.all(n.weight == 0) for n in norms)
    x = torch.randn(2, units[1].conv1.in_channels, 8, 8).relu()
    with torch.no_grad():
        assert torch.equal(units[1](x), x)  # identity shortcut, zero branch, ReLU of a non-negative input
    default = resnetlab.create_model(name)
    assert all(torch.all(u.last_branch_norm().weight == 1) for u in default.residual_units())


def test_reference_norm_replaces_every_batchnorm_and_agrees_with_torch():
    torch.manual_seed(0)
    reference = resnetlab.create_model("resnet20", norm="reference")
    torch_bn = resnetlab.create_model("resnet20")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in reference.modules())
    assert sum(isinstance(m, ReferenceBatchNorm2d) for m in reference.modules()) == 19
    torch_bn.load_state_dict(reference.state_dict(), strict=True)  # same keys and shapes
    x = torch.randn(8, 3, 32, 32)
    out_ref, out_torch = reference(x), torch_bn(x)
    torch.testing.assert_close(out_ref, out_torch, rtol=BATCHNORM_FLOAT32_TOLERANCE, atol=BATCHNORM_FLOAT32_TOLERANCE)
    out_ref.square().mean().backward(), out_torch.square().mean().backward()
    for (key, a), b in zip(reference.named_parameters(), torch_bn.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=key)


@pytest.mark.parametrize("options, message", [
    ({"shortcut": "D"}, "shortcut"),
    ({"norm": "layer"}, "norm"),
    ({"placement": "sideways"}, "placement"),
    ({"shortcut_variant": "gating"}, "shortcut_variant"),
    ({"gate_bias": -6.0}, "gate_bias"),
    ({"shortcut_variant": "constant_scaling", "shortcut_scale": 0.5}, "branch_scale"),
    ({"shortcut_variant": "conv1x1", "shortcut": "A"}, "option C"),
    ({"shortcut_variant": "dropout", "shortcut_dropout": 0.5, "stochastic_depth": 0.5}, "stochastic depth"),
])
def test_bad_options_raise_a_clear_value_error(options, message):
    with pytest.raises(ValueError, match=message):
        resnetlab.create_model("resnet20", **options)


def test_plain_nets_refuse_shortcut_options():
    with pytest.raises(ValueError, match="plain"):
        resnetlab.create_model("plain20", shortcut="B")


def test_cifar_builder_checks_the_depth_rule():
    from resnetlab.models import cifar_resnet
    assert cifar_resnet(depth=38).depth == 38
    with pytest.raises(ValueError, match="6n\\+2"):
        cifar_resnet(depth=21)
    with pytest.raises(ValueError, match="9n\\+2"):
        cifar_resnet(depth=50, block="bottleneck")


def test_in_channels_option():
    model = resnetlab.create_model("resnet20", in_channels=1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_a_net_built_on_the_meta_device_skips_the_he_initialisation(monkeypatch):
    drawn = []
    monkeypatch.setattr(nn.init, "kaiming_normal_", lambda weight, **kwargs: drawn.append(weight))
    with torch.device("meta"):  # how configs are checked and multiply-adds counted: shapes only
        model = resnetlab.create_model("resnet20")
    assert drawn == [] and all(p.is_meta for p in model.parameters())
    model = resnetlab.create_model("resnet20")  # every conv drawn: ResNet-20's 20 layers but the fc (shortcut A)
    assert len(drawn) == sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 19
