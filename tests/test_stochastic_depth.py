"""Stochastic depth (Huang et al. 2016): survival rule, expected depth, real skipping, test-time scaling."""

import copy

import pytest
import torch
from torch import nn

import resnetlab
from paper_facts import RESNET110_EXPECTED_ACTIVE_UNITS, RESNET110_RESIDUAL_UNITS, STOCHASTIC_DEPTH_P_LAST
from resnetlab.layers.stochastic_depth import DropPath, StochasticDepth, survival_probabilities


def test_linear_rule_matches_the_paper_formula():
    probs = survival_probabilities(RESNET110_RESIDUAL_UNITS, STOCHASTIC_DEPTH_P_LAST, "linear")
    assert probs[-1] == pytest.approx(STOCHASTIC_DEPTH_P_LAST)
    assert probs[0] == pytest.approx(1 - 0.5 / RESNET110_RESIDUAL_UNITS)
    assert all(a > b for a, b in zip(probs, probs[1:]))  # strictly decreasing with depth


def test_uniform_rule():
    assert survival_probabilities(5, 0.8, "uniform") == [0.8] * 5


def test_resnet110_expected_depth_is_the_papers():
    model = resnetlab.create_model("resnet110", stochastic_depth={"p_last": STOCHASTIC_DEPTH_P_LAST})
    assert model.expected_depth() == pytest.approx(RESNET110_EXPECTED_ACTIVE_UNITS)
    assert 40 <= model.expected_depth() < 41  # "about 40 residual blocks"
    # In weighted layers: stem conv + fc + 2 convs per expected active unit.
    assert model.expected_depth("layers") == pytest.approx(2 + 2 * RESNET110_EXPECTED_ACTIVE_UNITS)
    assert resnetlab.create_model("resnet110").expected_depth() == RESNET110_RESIDUAL_UNITS


@pytest.mark.parametrize("bad", [{"p_last": 0.0}, {"p_last": 1.5}, {"rule": "cosine"}, {"mode": "sample"},
                                 {"scaling": "none"}, {"p_list": 0.5}])
def test_bad_settings_are_rejected(bad):
    with pytest.raises(ValueError):
        resnetlab.create_model("resnet20", stochastic_depth=bad)


def test_plain_nets_reject_stochastic_depth():
    with pytest.raises(ValueError, match="plain"):
        resnetlab.create_model("plain20", stochastic_depth=0.5)


@pytest.mark.parametrize("name", ["resnet20", "preact_resnet164", "resnet18", "preact_resnet50"])
def test_p_last_one_equals_the_plain_residual_net(name):
    torch.manual_seed(0)
    reference = resnetlab.create_model(name)
    gated = resnetlab.create_model(name, stochastic_depth={"p_last": 1.0})
    gated.load_state_dict(reference.state_dict())
    size = 32 if resnetlab.get_model_spec(name).dataset == "cifar" else 64
    x = torch.randn(4, 3, size, size)
    for mode in (True, False):
        reference.train(mode), gated.train(mode)
        out_ref, out_gated = reference(x), gated(x)
        assert torch.equal(out_ref, out_gated)
    out_ref.sum().backward(), out_gated.sum().backward()
    for (key, a), b in zip(reference.named_parameters(), gated.parameters()):
        assert torch.equal(a.grad, b.grad), key


class ConvCounter:
    """Counts forward calls of every convolution of a model."""

    def __init__(self, model):
        self.calls = {}
        for name, module in model.named_modules():
            if isinstance(module, nn.Conv2d):
                module.register_forward_hook(lambda m, i, o, name=name: self.calls.__setitem__(
                    name, self.calls.get(name, 0) + 1))


@pytest.mark.parametrize("name", ["resnet56", "preact_resnet164"])
def test_a_dropped_unit_in_batch_mode_runs_no_convolution(name):
    torch.manual_seed(3)
    model = resnetlab.create_model(name, stochastic_depth={"p_last": 0.2, "mode": "batch"}).train()
    counter = ConvCounter(model)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    units = list(model.named_modules())
    dropped = [n for n, m in units if hasattr(m, "drop_path") and m.drop_path is not None and not m.drop_path.last_kept]
    kept = [n for n, m in units if hasattr(m, "drop_path") and m.drop_path is not None and m.drop_path.last_kept]
    assert len(dropped) >= 5 and len(kept) >= 5  # p_L = 0.2 drops a good share of the units
    for unit in dropped:
        branch_convs = [n for n in counter.calls if n.startswith(unit + ".conv")]
        assert branch_convs == []  # never called in the forward pass
        for conv_name, conv in model.get_submodule(unit).named_children():
            if conv_name.startswith("conv"):
                assert conv.weight.grad is None  # and nothing computed for it in the backward pass
    for unit in kept:
        assert all(counter.calls.get(f"{unit}.conv{i}") == 1 for i in (1, 2))
    expected_calls = 1 + sum(model.get_submodule(u).weighted_layers for u in kept) + sum(
        1 for u in (*kept, *dropped) if isinstance(model.get_submodule(u).downsample, nn.Sequential))
    assert sum(counter.calls.values()) == expected_calls


def test_batch_mode_drops_at_the_survival_rate():
    gate = DropPath(0.3, mode="batch").train()
    torch.manual_seed(0)
    kept = sum(not gate.skip_branch() for _ in range(4000))
    assert kept / 4000 == pytest.approx(0.3, abs=0.03)


def test_row_mode_masks_samples_independently():
    torch.manual_seed(0)
    gate = DropPath(0.5, mode="row", scaling="test").train()
    out = gate(torch.ones(1000, 2, 3, 3))
    per_sample = out.flatten(1)
    assert set(per_sample.unique().tolist()) == {0.0, 1.0}
    assert torch.all(per_sample.min(1).values == per_sample.max(1).values)  # whole sample kept or dropped
    assert per_sample[:, 0].mean().item() == pytest.approx(0.5, abs=0.06)
    assert not gate.skip_branch()  # row mode never skips a whole branch


def test_scaling_conventions():
    branch = torch.full((2, 1, 1, 1), 3.0)
    test_scaling, train_scaling = DropPath(0.8, scaling="test"), DropPath(0.8, scaling="train")
    test_scaling.eval(), train_scaling.eval()
    assert torch.allclose(test_scaling(branch), branch * 0.8)  # the paper: p_l * f_l at test time
    assert torch.equal(train_scaling(branch), branch)
    test_scaling.train(), train_scaling.train()
    assert torch.equal(test_scaling(branch), branch)
    assert torch.allclose(train_scaling(branch), branch / 0.8)


def test_eval_output_is_the_expectation_of_training_gates():
    # With BN frozen (eval) the test-time network uses p_l f_l(x), the mean over the training gates.
    torch.manual_seed(1)
    model = resnetlab.create_model("resnet20", stochastic_depth={"p_last": 0.5, "rule": "uniform"})
    unit = model.layer2[1]
    unit.eval()
    x = torch.randn(2, 32, 16, 16).relu()
    with torch.no_grad():
        full = unit.branch(x)
        assert torch.allclose(unit(x), torch.relu(x + 0.5 * full), atol=1e-6)


def test_eval_mode_is_deterministic_and_draws_no_random_numbers():
    model = resnetlab.create_model("resnet20", stochastic_depth=0.5).eval()
    x = torch.randn(2, 3, 32, 32)
    state = torch.get_rng_state()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    assert torch.equal(torch.get_rng_state(), state)


def test_training_outputs_vary_with_the_gates():
    torch.manual_seed(0)
    model = resnetlab.create_model("resnet20", stochastic_depth=0.2).train()
    x = torch.randn(2, 3, 32, 32)
    outputs = {tuple(model(x).flatten().tolist()) for _ in range(5)}
    assert len(outputs) > 1


def test_settings_dataclass_round_trip():
    settings = StochasticDepth(p_last=0.2, rule="uniform", mode="row", scaling="train")
    model = resnetlab.create_model("resnet20", stochastic_depth=settings)
    assert model.survival_probabilities() == [0.2] * 9
    assert copy.deepcopy(model).survival_probabilities() == [0.2] * 9
