"""One way from a config to a model: a training run, its checkpoint and its exported model card rebuild the same
network, for every kind of option (stochastic depth, activation checkpointing, norm, placement, shortcut variants,
the BN-study net's own options)."""

import pytest
import torch

from resnetlab.config import load_config
from resnetlab.deploy import load_pretrained
from resnetlab.deploy.export import export_checkpoint
from resnetlab.training.inference import load_trained_model
from resnetlab.training.session import train
from resnetlab.training.trainer import build_run

TINY = ["data.name=synthetic", "data.synthetic_train_size=64", "data.synthetic_test_size=16", "data.validation_size=16",
        "train.batch_size=16", "train.iterations=1", "train.lr=0.001", "train.compile=false"]
MODELS = {
    "stochastic depth, checkpointing, reference BN, shortcut B, zero init": [
        "model.name=resnet20", "model.stochastic_depth={p_last: 0.5, rule: linear, mode: batch, scaling: test}",
        "model.checkpoint_segments=2", "model.norm=reference", "model.shortcut=B", "model.zero_init_residual=true"],
    "placement (d), exclusive gating, 12 outputs": [
        "model.name=resnet20", "model.placement=relu_only_preact", "model.shortcut_variant=exclusive_gating",
        "model.gate_bias=-6", "model.num_classes=12"],
    "full pre-activation, row-mode stochastic depth, average-pool shortcut": [
        "model.name=resnet20", "model.placement=full_preact", "model.stochastic_depth={p_last: 0.8, mode: row}",
        "model.shortcut_pool=avg"],
    "bottleneck, options section spelled out, v1 stride": [
        "model.name=resnet164", "model.options={stride_in_1x1: true, shortcut: C, zero_init_residual: true}",
        "model.checkpoint_segments=3"],
    "BN-study net without BN, sigmoid": ["model.name=bn_cnn", "model.norm=none", "model.activation=sigmoid"],
}


def structure(model: torch.nn.Module) -> tuple:
    """What makes two networks the same network: every module with its settings, every tensor's name and shape,
    the options value and the training-only switches (activation checkpointing, stochastic-depth rates)."""
    shapes = tuple((name, tuple(t.shape)) for name, t in model.state_dict().items())
    return (repr(model), shapes, getattr(model, "options", None), getattr(model, "checkpoint_segments", None))


@pytest.mark.parametrize("overrides", list(MODELS.values()), ids=list(MODELS))
def test_a_run_its_checkpoint_and_its_card_build_the_same_model(tmp_path, overrides):
    config = load_config(None, [*TINY, *overrides, f"run.out_dir={tmp_path}", "run.name=run"])
    trained_model = build_run(config, log=lambda _: None).model
    train(config, log=lambda _: None)
    from_checkpoint = load_trained_model(tmp_path / "run").model
    export = export_checkpoint(tmp_path / "run", "safetensors", tmp_path / "model.safetensors")
    from_card = load_pretrained(export.path)
    assert structure(from_checkpoint) == structure(trained_model)
    assert structure(from_card) == structure(trained_model)
    for name, tensor in from_checkpoint.state_dict().items():
        torch.testing.assert_close(from_card.state_dict()[name], tensor, rtol=0, atol=0, msg=name)


def test_the_option_reaches_the_network_the_trainer_builds():
    config = load_config(None, [*TINY, *MODELS["stochastic depth, checkpointing, reference BN, shortcut B, zero init"]])
    model = build_run(config, log=lambda _: None).model
    assert model.checkpoint_segments == 2
    assert model.options.norm == "reference" and model.options.stochastic_depth.p_last == 0.5
    assert model.survival_probabilities()[-1] == pytest.approx(0.5)
    assert type(model.layer1[0].bn1).__name__ == "ReferenceBatchNorm2d"
    assert model.layer1[0].bn2.weight.abs().sum() == 0  # zero_init_residual
