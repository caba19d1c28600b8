"""The run configuration: recipes, overrides, validation in one line, and the saved resolved config."""

import pytest
import yaml

from resnetlab.config import Config, ConfigError, load_config, recipe_root, save_config, to_dict
from resnetlab.models import list_models

CONFIGS = recipe_root()


def test_defaults_are_the_resnet_paper_cifar_recipe():
    config = load_config()
    train = config.train
    assert (train.batch_size, train.lr, train.momentum, train.weight_decay) == (128, 0.1, 0.9, 1e-4)
    assert train.iterations == 64000 and train.schedule.milestones == (32000, 48000)
    # auto: without model.weights, the per-pixel mean of the training images (He et al. 2015)
    assert config.data.validation_size == 5000 and config.data.normalization == "auto"


def test_overrides_parse_values_as_yaml():
    config = load_config(None, ["train.lr=0.05", "train.nesterov=true", "train.schedule.milestones=[10, 20]",
                                "model.stochastic_depth={p_last: 0.5}", "train.iterations=null", "train.epochs=3"])
    assert config.train.lr == 0.05 and config.train.nesterov is True
    assert load_config(None, ["train.weight_decay=5e-4"]).train.weight_decay == 5e-4  # YAML 1.1 reads a string
    assert config.train.schedule.milestones == (10, 20)
    assert config.model.options == {"stochastic_depth": {"p_last": 0.5}}
    assert config.train.epochs == 3 and config.train.iterations is None


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: p.stem)
def test_every_recipe_in_configs_loads(path):
    config = load_config(path)
    assert config.model.name in list_models()
    assert config.paper["source"] and config.paper["row"]  # every recipe says which table row it reproduces
    assert load_config(path.stem) == config  # and is found by its name
    assert config.paper["source"]


@pytest.mark.parametrize("overrides, message", [
    (["train.lrr=0.1"], "unknown key train.lrr; allowed in train: iterations"),
    (["optimizer.lr=0.1"], "unknown key optimizer"),
    (["train.lr=-1"], "train.lr must be positive"),
    (["train.batch_size=abc"], "train.batch_size must be an integer, got 'abc'"),
    (["train.nesterov=maybe"], "train.nesterov must be true or false"),
    (["data.name=imagenet"], "data.name must be one of synthetic, cifar10, cifar100, folder"),
    (["train.iterations=null"], "set exactly one of train.iterations and train.epochs"),
    (["train.schedule.milestones=[48000, 32000]"], "train.schedule.milestones must be strictly increasing"),
    (["train.schedule.warmup.kind=linear"], "needs train.schedule.warmup.steps > 0"),
    (["train.schedule.warmup.steps=5"], "train.schedule.warmup.steps=5 has no effect"),
    (["train.schedule.warmup.kind=error_threshold", "train.schedule.warmup.threshold=1"],
     "train.schedule.warmup.threshold is a training error fraction in (0, 1)"),
    (["train.schedule.gamma=0"], "train.schedule.gamma must be in (0, 1]"),
    (["model.name=resnet111"], "model: unknown model 'resnet111'; did you mean: resnet110"),
    (["model.shortcut=D"], "model: shortcut must be one of"),
    (["model.colour=red"], "model: unknown option(s) ['colour']"),
    (["model.stochastic_depth.p_last=2"], "p_last must be in (0, 1]"),
    (["lr"], "must look like key=value"),
])
def test_bad_values_are_named_in_one_line(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_length_override_replaces_the_other_unit():
    assert load_config(None, ["train.epochs=10"]).train.iterations is None
    config = load_config(None, ["train.epochs=10", "train.iterations=500"])
    assert (config.train.iterations, config.train.epochs) == (500, None)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train:\n  lr: [0.1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listing)


def test_saved_config_reloads_to_the_same_config(tmp_path):
    config = load_config(CONFIGS / "identity_mappings" / "table1_exclusive_gating_m6.yaml", ["train.lr=0.05"])
    save_config(config, tmp_path / "config.yaml")
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["model"]["gate_bias"] == -6.0 and saved["train"]["lr"] == 0.05
    assert load_config(tmp_path / "config.yaml") == config
    assert to_dict(Config()) == to_dict(load_config())


def test_recipes_carry_the_papers_training_settings():
    he = load_config(CONFIGS / "resnet" / "table6_cifar10_resnet110.yaml")
    assert he.train.iterations == 64000 and he.train.schedule.milestones == (32000, 48000)
    assert he.train.schedule.warmup.kind == "error_threshold" and he.train.schedule.warmup.lr == 0.01
    assert he.data.name == "cifar10" and he.data.validation_size == 5000
    sd = load_config(CONFIGS / "stochastic_depth" / "table1_cifar10_resnet110_stochastic.yaml")
    assert sd.train.epochs == 500 and sd.train.schedule.unit == "epochs" and sd.train.nesterov
    assert sd.model.options["stochastic_depth"]["p_last"] == 0.5 and sd.model.options["shortcut_pool"] == "avg"
    paper_rows = {p.stem for p in CONFIGS.rglob("*.yaml")}
    assert {f"table6_cifar10_resnet{d}" for d in (20, 32, 44, 56, 110, 1202)} <= paper_rows
