"""He et al. 2016, Tables 1 and 2: every row is a config in configs/ and builds the unit the paper draws."""


import pytest
import torch
import torch.nn.functional as F
import yaml

import resnetlab
from paper_facts import HE2016_TABLE1, HE2016_TABLE2
from resnetlab.config import recipe_root
from resnetlab.layers.shortcut_variants import ConstantScaling, ExclusiveGating, ShortcutDropout, ShortcutOnlyGating

CONFIGS = recipe_root() / "identity_mappings"


def load(stem):
    return yaml.safe_load((CONFIGS / f"{stem}.yaml").read_text())


def build(config):
    options = dict(config["model"])
    return resnetlab.create_model(options.pop("name"), **options)


def test_one_config_per_table_row():
    names = {p.stem for p in CONFIGS.glob("table[12]_*.yaml")}
    expected = {f"table1_{row}" for row in HE2016_TABLE1}
    expected |= {f"table2_resnet{depth}_{row}" for row in HE2016_TABLE2 for depth in (110, 164)}
    assert names == expected


@pytest.mark.parametrize("row", sorted(HE2016_TABLE1))
def test_table1_configs_carry_the_papers_error(row):
    assert load(f"table1_{row}")["paper"]["cifar10_error"] == HE2016_TABLE1[row]


@pytest.mark.parametrize("row", sorted(HE2016_TABLE2))
@pytest.mark.parametrize("column, depth", [(0, 110), (1, 164)])
def test_table2_configs_carry_the_papers_error(row, column, depth):
    assert load(f"table2_resnet{depth}_{row}")["paper"]["cifar10_error"] == HE2016_TABLE2[row][column]


@pytest.mark.parametrize("stem", sorted(p.stem for p in CONFIGS.glob("table[12]_*.yaml")))
def test_every_config_builds_and_trains_one_step(stem):
    torch.manual_seed(0)
    config = load(stem)
    model = build(config)
    assert model.depth == int(config["model"]["name"].removeprefix("preact_").removeprefix("resnet"))
    out = model(torch.randn(2, 3, 16, 16))
    out.sum().backward()
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("stem, kind", [
    ("table1_constant_scaling_05_05", ConstantScaling), ("table1_exclusive_gating_m6", ExclusiveGating),
    ("table1_shortcut_only_gating_0", ShortcutOnlyGating), ("table1_dropout_05", ShortcutDropout),
])
def test_shortcut_variants_sit_in_every_unit(stem, kind):
    model = build(load(stem))
    assert all(isinstance(unit.merge, kind) for unit in model.residual_units())


def test_gate_bias_initialisation_survives_he_init():
    model = build(load("table1_exclusive_gating_m6"))
    assert all(torch.all(u.merge.gate.bias == -6.0) for u in model.residual_units())


def test_conv1x1_row_projects_every_shortcut():
    model = build(load("table1_conv1x1"))
    assert all(unit.downsample is not None and unit.downsample[0].kernel_size == (1, 1)
               for unit in model.residual_units())


def _unit_and_input(stem, stage=1, index=1):
    torch.manual_seed(0)
    model = build(load(stem)).eval()
    unit = model.stages()[stage][index]
    with torch.no_grad():
        for module in unit.modules():  # non-trivial BN statistics so each BN really matters
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5), module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5), module.bias.uniform_(-0.5, 0.5)
    channels = unit.conv1.in_channels
    return unit, torch.randn(2, channels, 8, 8)


def test_merge_formulas():
    unit, x = _unit_and_input("table1_exclusive_gating_m6")
    with torch.no_grad():
        g = torch.sigmoid(unit.merge.gate(x))
        assert torch.allclose(unit(x), F.relu((1 - g) * x + g * unit.branch(x)), atol=1e-6)
    unit, x = _unit_and_input("table1_shortcut_only_gating_0")
    with torch.no_grad():
        g = torch.sigmoid(unit.merge.gate(x))
        assert torch.allclose(unit(x), F.relu((1 - g) * x + unit.branch(x)), atol=1e-6)
    unit, x = _unit_and_input("table1_constant_scaling_05_05")
    with torch.no_grad():
        assert torch.allclose(unit(x), F.relu(0.5 * x + 0.5 * unit.branch(x)), atol=1e-6)


def _basic(unit, x, placement):
    """The five units of He et al. 2016, Fig. 4, written out from the figure with the unit's own layers."""
    conv1, bn1, conv2 = unit.conv1, unit.bn1, unit.conv2
    if placement == "original":
        return F.relu(x + unit.bn2(conv2(F.relu(bn1(conv1(x))))))
    if placement == "bn_after_add":
        return F.relu(unit.bn2(x + conv2(F.relu(bn1(conv1(x))))))
    if placement == "relu_before_add":
        return x + F.relu(unit.bn2(conv2(F.relu(bn1(conv1(x))))))
    if placement == "relu_only_preact":
        return x + unit.bn2(conv2(F.relu(bn1(conv1(F.relu(x))))))
    return x + conv2(F.relu(unit.bn2(conv1(F.relu(bn1(x))))))  # full pre-activation


@pytest.mark.parametrize("placement", sorted(HE2016_TABLE2))
def test_activation_placements_compute_figure_4(placement):
    unit, x = _unit_and_input(f"table2_resnet110_{placement}")
    with torch.no_grad():
        assert torch.allclose(unit(x), _basic(unit, x, placement), atol=1e-5)


def test_bottleneck_full_preactivation_unit():
    unit, x = _unit_and_input("table2_resnet164_full_preact")
    with torch.no_grad():
        out = unit.conv1(F.relu(unit.bn1(x)))
        out = unit.conv2(F.relu(unit.bn2(out)))
        out = unit.conv3(F.relu(unit.bn3(out)))
        assert torch.allclose(unit(x), x + out, atol=1e-5)


# The ReLU-only pre-activation net (d) keeps the ReLU that its last unit's addition had in (a): the paper's Sec. 4.1
# gives the pre-activation nets "an extra activation right after its element-wise addition" in the last unit, the
# natural outcome of moving each after-addition ReLU into the next unit (Fig. 5). (c) ends on its bare addition
# (non-negative anyway: a sum of non-negative terms, the paper's "monotonically increasing" signal).
@pytest.mark.parametrize("depth", [110, 164])
def test_only_relu_only_preactivation_adds_a_final_relu(depth):
    for placement, final_relu in (("relu_only_preact", True), ("relu_before_add", False)):
        torch.manual_seed(0)
        model = build(load(f"table2_resnet{depth}_{placement}")).eval()
        last = {}
        model.layer3[-1].register_forward_hook(lambda module, inputs, output: last.update(output=output.clone()))
        with torch.no_grad():
            features = model.forward_features(torch.randn(2, 3, 32, 32))
        if final_relu:
            assert (last["output"] < 0).any() and torch.equal(features, F.relu(last["output"]))
        else:
            assert torch.equal(features, last["output"])
