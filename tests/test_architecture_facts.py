"""Every named network against the papers' parameter counts, multiply-adds and depths."""

import pytest
import torch
from torch import nn

import resnetlab
from paper_facts import (
    HE2015_TABLE1_GMACS_V1,
    HE2015_TABLE6_PARAMS_M,
    HE2016_PARAMS_M,
    HE2016_PREACT_RESNET110_PARAMS_M,
    TORCHVISION_GMACS_V15,
    TORCHVISION_PARAMS,
)
from resnetlab.models.complexity import build_on_meta, count_multiply_adds, count_parameters, count_weight_parameters


def params(name, **options):
    return count_parameters(build_on_meta(name, **options))


def rounded_millions(count, paper_value):
    """Round a count as the paper rounds the given value: 0.01M below 1M, 0.1M above."""
    return round(count / 1e6, 2 if paper_value < 1 else 1)


@pytest.mark.parametrize("name", sorted(HE2015_TABLE6_PARAMS_M))
def test_cifar_resnet_parameters_match_table6(name):
    assert rounded_millions(params(name), HE2015_TABLE6_PARAMS_M[name]) == HE2015_TABLE6_PARAMS_M[name]


def test_cifar_nets_are_6n_plus_2_with_16_32_64_filters():
    model = resnetlab.create_model("resnet56")
    assert [len(s) for s in model.stages()] == [9, 9, 9]
    assert [s[0].conv1.out_channels for s in model.stages()] == [16, 32, 64]
    assert model.conv1.kernel_size == (3, 3) and model.fc.out_features == 10


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_plain_nets_have_the_parameters_of_option_a_resnets(depth):
    # Option A adds no parameters, so plain and residual nets are the same size (He et al. 2015, Sec. 4.2).
    assert params(f"plain{depth}") == params(f"resnet{depth}")


def test_option_b_adds_projection_parameters_only_where_dimensions_grow():
    # Two projections (16->32, 32->64), each a 1x1 conv and a BN.
    extra = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert params("resnet20", shortcut="B") - params("resnet20") == extra


def test_imagenet_plain34_equals_resnet34_with_option_a():
    assert params("plain34") == params("resnet34", shortcut="A")


@pytest.mark.parametrize("name", sorted(HE2016_PARAMS_M))
def test_preact_bottleneck_parameters_match_identity_mappings(name):
    model = build_on_meta(name)
    assert rounded_millions(count_weight_parameters(model), HE2016_PARAMS_M[name]) == HE2016_PARAMS_M[name]
    assert count_parameters(model) - count_weight_parameters(model) > 0  # BN's gamma, beta on top


def test_preact_resnet110_parameters():
    assert round(params("preact_resnet110") / 1e6, 1) == HE2016_PREACT_RESNET110_PARAMS_M


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_imagenet_parameters_equal_torchvision(name):
    assert params(name) == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152, 200])
def test_preact_imagenet_nets_have_the_same_convolutions_as_the_originals(depth):
    original, preact = build_on_meta(f"resnet{depth}"), build_on_meta(f"preact_resnet{depth}")
    assert count_weight_parameters(preact) == count_weight_parameters(original)


@pytest.mark.parametrize("name", sorted(HE2015_TABLE1_GMACS_V1))
def test_multiply_adds_v1_match_the_paper_table1(name):
    v1 = {"stride_in_1x1": True} if resnetlab.get_model_spec(name).architecture["block"] == "bottleneck" else {}
    gmacs = count_multiply_adds(build_on_meta(name, **v1), 224) / 1e9
    assert abs(gmacs - HE2015_TABLE1_GMACS_V1[name]) < 0.1  # the paper gives one decimal


@pytest.mark.parametrize("name", sorted(TORCHVISION_GMACS_V15))
def test_multiply_adds_v15_match_torchvision(name):
    gmacs = count_multiply_adds(build_on_meta(name), 224) / 1e9
    assert round(gmacs, 2) == TORCHVISION_GMACS_V15[name]


def _main_path_weighted_layers(model):
    """Count convolutions outside shortcuts and gates, plus the fc: the depth in the papers' sense."""
    convs = [name for name, m in model.named_modules()
             if isinstance(m, nn.Conv2d) and ".downsample" not in name and ".merge" not in name]
    return len(convs) + sum(isinstance(m, nn.Linear) for m in model.modules())


@pytest.mark.parametrize("name", resnetlab.list_models())
def test_registered_depth_equals_counted_layers(name):
    model = build_on_meta(name)
    assert _main_path_weighted_layers(model) == resnetlab.get_model_spec(name).depth == model.depth


def test_stride_in_1x1_moves_the_stride_to_the_first_1x1():
    v1, v15 = resnetlab.create_model("resnet50", stride_in_1x1=True), resnetlab.create_model("resnet50")
    assert v1.layer2[0].conv1.stride == (2, 2) and v1.layer2[0].conv2.stride == (1, 1)
    assert v15.layer2[0].conv1.stride == (1, 1) and v15.layer2[0].conv2.stride == (2, 2)


@pytest.mark.parametrize("name", ["preact_resnet164", "preact_resnet1001"])
def test_cifar_preactivation_bottlenecks_stride_in_the_first_1x1_as_the_authors_code(name):
    # KaimingHe/resnet-1k-layers, resnet-pre-act.lua: Convolution(nInputPlane, nBottleneckPlane, 1, 1, stride, ...)
    model = build_on_meta(name)
    for stage in (model.layer2, model.layer3):
        assert stage[0].conv1.stride == (2, 2) and stage[0].conv2.stride == (1, 1)
    with pytest.raises(ValueError, match="stride_in_1x1.*fixed by the name"):  # the authors' network
        resnetlab.create_model(name, stride_in_1x1=False)


def test_imagenet_preactivation_bottlenecks_stride_in_the_3x3_unless_asked():
    default, v1 = build_on_meta("preact_resnet50"), build_on_meta("preact_resnet50", stride_in_1x1=True)
    assert default.layer2[0].conv2.stride == (2, 2) and default.layer2[0].conv1.stride == (1, 1)
    assert v1.layer2[0].conv1.stride == (2, 2) and v1.layer2[0].conv2.stride == (1, 1)
    with pytest.raises(ValueError, match="basic units have no 1x1"):
        resnetlab.create_model("resnet20", stride_in_1x1=True)


def test_shortcut_c_projects_every_unit():
    model = build_on_meta("resnet34", shortcut="C")
    assert all(unit.downsample is not None for unit in model.units())
    b = build_on_meta("resnet34")
    assert sum(unit.downsample is not None for unit in b.units()) == 3  # stages 2-4 only


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_multiply_adds_scale_with_pixels(name):
    # Sanity of the counter itself: a 448 image costs ~4x a 224 image (the fc is the small exception).
    model = build_on_meta(name)
    ratio = count_multiply_adds(model, 448) / count_multiply_adds(model, 224)
    assert 3.95 < ratio < 4.0


def test_he_initialisation_of_convolutions():
    torch.manual_seed(0)
    conv = resnetlab.create_model("resnet56").layer3[4].conv2  # 64 -> 64, 3x3: fan_out = 576
    assert conv.weight.std().item() == pytest.approx((2 / 576) ** 0.5, rel=0.05)
