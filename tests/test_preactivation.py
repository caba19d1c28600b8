"""He et al. 2016, appendix: where the first and the last activation of a pre-activation net sit."""

import pytest
import torch
import torch.nn.functional as F

import resnetlab


@pytest.mark.parametrize("name", ["preact_resnet110", "preact_resnet164", "preact_resnet18", "preact_resnet50"])
def test_first_unit_uses_the_activation_right_after_the_stem(name):
    model = resnetlab.create_model(name)
    first = model.layer1[0]
    assert first.preact == "none" and first.bn1 is None  # BN-ReLU sits after conv1, before the split
    assert model.bn1.num_features == model.conv1.out_channels


@pytest.mark.parametrize("name", ["preact_resnet110", "preact_resnet164", "preact_resnet50", "preact_resnet200"])
def test_units_where_dimensions_grow_preactivate_before_the_split(name):
    model = resnetlab.create_model(name)
    for stage in model.stages()[1:]:
        assert stage[0].preact == "shared"
        assert all(unit.preact == "branch" for unit in stage[1:])
    for unit in model.residual_units():
        if unit.downsample is not None and hasattr(unit.downsample, "__getitem__"):
            assert len(unit.downsample) == 1  # a projection without BN: it adds into the raw trunk


def test_last_unit_is_followed_by_an_extra_bn_relu():
    model = resnetlab.create_model("preact_resnet164").eval()
    assert model.final_bn.num_features == 256
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        trunk = model.layer3(model.layer2(model.layer1(model.forward_stem(x))))
        expected = model.fc(F.relu(model.final_bn(trunk)).mean((2, 3)))
        assert torch.allclose(model(x), expected, atol=1e-5)
    assert resnetlab.create_model("resnet164").final_bn is None  # the original net has none


def test_shared_preactivation_feeds_the_projection():
    torch.manual_seed(0)
    unit = resnetlab.create_model("preact_resnet164").layer2[0].eval()
    x = torch.randn(2, unit.bn1.num_features, 8, 8)
    with torch.no_grad():
        activated = F.relu(unit.bn1(x))
        out = unit.conv3(F.relu(unit.bn3(unit.conv2(F.relu(unit.bn2(unit.conv1(activated)))))))
        assert torch.allclose(unit(x), unit.downsample(activated) + out, atol=1e-5)


def test_resnet200_layout_is_fb_resnet_torch():
    assert [len(s) for s in resnetlab.create_model("preact_resnet200").stages()] == [3, 24, 36, 3]
