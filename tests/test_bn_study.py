"""The batch-norm study's small conv net (Ioffe & Szegedy 2015 at small scale): shape, size, options, init."""

import pytest
import torch
from torch import nn

import resnetlab
from resnetlab.config import ConfigError, load_config
from resnetlab.layers.batchnorm import ReferenceBatchNorm2d
from resnetlab.models.bn_study import SmallConvNet

# Parameters, by hand. Convs are 3x3, widths 3 -> 32, 32 -> 32 | 32 -> 64, 64 -> 64 | 64 -> 128, 128 -> 128:
#   conv weights 9 * (3*32 + 32*32 + 32*64 + 64*64 + 64*128 + 128*128) = 9 * 31_840 = 286_560
#   fc 128 * 10 weights + 10 biases                                                  =   1_290
#   per-channel terms over the six convs: 32 + 32 + 64 + 64 + 128 + 128            =     448
# norm="batch": BN gamma and beta, 2 * 448 (the convs have no bias: beta replaces it)
CONV_WEIGHTS, FC, CHANNELS = 286_560, 1_290, 448
PARAMS_BATCH = CONV_WEIGHTS + FC + 2 * CHANNELS  # 288_746
# norm="none": one bias per conv output channel instead, 448
PARAMS_NONE = CONV_WEIGHTS + FC + CHANNELS  # 288_298


def _bn_layers(model):
    return [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, ReferenceBatchNorm2d))]


def test_output_shape_on_a_cifar_batch():
    out = resnetlab.create_model("bn_cnn")(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)


@pytest.mark.parametrize("norm, expected", [("batch", PARAMS_BATCH), ("reference", PARAMS_BATCH),
                                            ("none", PARAMS_NONE)])
def test_parameter_count_matches_the_hand_count(norm, expected):
    model = SmallConvNet(norm=norm)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_norm_layers_and_conv_biases_follow_the_norm_option():
    plain, batch = SmallConvNet(norm="none"), SmallConvNet(norm="batch")
    assert _bn_layers(plain) == []
    assert len(_bn_layers(batch)) == 6 and all(isinstance(m, nn.BatchNorm2d) for m in _bn_layers(batch))
    assert all(isinstance(m, ReferenceBatchNorm2d) for m in _bn_layers(SmallConvNet(norm="reference")))
    convs = lambda model: [m for m in model.modules() if isinstance(m, nn.Conv2d)]  # noqa: E731
    assert all(c.bias is not None for c in convs(plain)) and all(c.bias is None for c in convs(batch))


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_sigmoid_activations_lie_strictly_between_0_and_1(norm):
    torch.manual_seed(0)
    model = SmallConvNet(norm=norm, activation="sigmoid")
    outputs = []
    for module in model.modules():
        assert not isinstance(module, nn.ReLU)
        if isinstance(module, nn.Sigmoid):
            module.register_forward_hook(lambda _m, _i, out: outputs.append(out))
    model(torch.randn(4, 3, 32, 32))
    assert len(outputs) == 6
    assert all(((out > 0) & (out < 1)).all() for out in outputs)


@pytest.mark.parametrize("option, value, allowed", [
    ("norm", "layer", "'batch', 'reference', 'none'"),
    ("activation", "tanh", "'relu', 'sigmoid'"),
])
def test_unknown_options_name_the_allowed_values(option, value, allowed):
    with pytest.raises(ValueError, match=f"{option} must be one of .*{allowed}.*{value}"):
        resnetlab.create_model("bn_cnn", **{option: value})


def test_registry_entry_lists_the_options():
    spec = resnetlab.get_model_spec("bn_cnn")
    assert (spec.dataset, spec.depth, spec.input_size, spec.num_classes) == ("cifar", 7, 32, 10)
    assert spec.options() == ["num_classes", "norm", "activation", "in_channels"]
    assert resnetlab.create_model("bn_cnn", num_classes=100).fc.out_features == 100
    names = resnetlab.list_models()  # registered after the papers' ResNets, so their order is unchanged
    he = [name for name in names if resnetlab.get_model_spec(name).paper.startswith("He et al.")]
    assert names[:len(he)] == he and names.index("bn_cnn") >= len(he)


def test_config_validates_the_model_options():
    config = load_config(None, ["model.name=bn_cnn", "model.norm=none", "model.activation=sigmoid"])
    assert config.model.options == {"norm": "none", "activation": "sigmoid"}
    with pytest.raises(ConfigError, match="activation must be one of"):
        load_config(None, ["model.name=bn_cnn", "model.activation=tanh"])


def test_a_seed_gives_the_same_conv_weights_with_and_without_bn():
    torch.manual_seed(3)
    batch = SmallConvNet(norm="batch")
    torch.manual_seed(3)
    plain = SmallConvNet(norm="none", activation="sigmoid")
    weights = lambda model: [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]  # noqa: E731
    assert len(weights(batch)) == 7
    for a, b in zip(weights(batch), weights(plain)):
        assert torch.equal(a, b)
    assert all(torch.count_nonzero(m.conv.bias) == 0 for m in plain.modules() if hasattr(m, "conv"))
    # He normal, fan-in: the 128 -> 128 conv has fan_in 1152
    assert batch.stage3[1].conv.weight.std().item() == pytest.approx((2 / 1152) ** 0.5, rel=0.05)


def test_one_sgd_step_lowers_the_loss_with_batch_norm():
    torch.manual_seed(0)
    model = SmallConvNet(norm="batch")
    images, labels = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss = nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        after = nn.functional.cross_entropy(model(images), labels)
    assert after.item() < loss.item()
