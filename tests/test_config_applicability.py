"""No setting silently ignored: every config key is written down as acting always or only in some set-ups, and
each key set where it has no effect is refused in one line that names it (exit 2 from the command line)."""

import pytest

from resnetlab.cli import main
from resnetlab.config import Config, ConfigError, load_config
from resnetlab.config.applicability import ALWAYS, INERT_WHEN, leaf_values

# key -> overrides that set it where it has no effect
INERT_CASES = {
    "data.root": ["data.name=synthetic", "data.root=/elsewhere"],
    "data.download": ["data.name=synthetic", "data.download=true"],
    "data.skip_bad": ["data.name=cifar10", "data.skip_bad=true"],
    "data.loader": ["data.name=synthetic", "data.loader=memory"],
    "data.image_size": ["data.name=cifar10", "data.image_size=64"],
    "data.crop": ["data.name=folder", "data.loader=memory", "data.crop=128"],
    "data.scale": ["data.name=synthetic", "data.scale=[256, 300]"],
    "data.eval_resize": ["data.name=cifar10", "data.eval_resize=300"],
    "data.ten_crop": ["data.name=folder", "data.loader=memory", "data.ten_crop=true"],
    "data.lighting": ["data.name=cifar10", "data.lighting=0.1"],
    "data.eval_crop": ["data.name=synthetic", "data.eval_crop=200"],
    "data.num_workers": ["data.name=cifar10", "data.num_workers=4"],
    "data.synthetic_train_size": ["data.name=cifar10", "data.synthetic_train_size=500"],
    "data.synthetic_test_size": ["data.name=folder", "data.synthetic_test_size=500"],
    "train.schedule.milestones": ["train.schedule.name=cosine", "train.schedule.milestones=[100]"],
    "train.schedule.gamma": ["train.schedule.name=constant", "train.schedule.gamma=0.5"],
    "train.schedule.warmup.steps": ["train.schedule.warmup.steps=100"],
    "train.schedule.warmup.lr": ["train.schedule.warmup.lr=0.05"],
    "train.schedule.warmup.threshold": ["train.schedule.warmup.kind=linear", "train.schedule.warmup.steps=10",
                                        "train.schedule.warmup.threshold=0.5"],
    "train.schedule.warmup.min_steps": ["train.schedule.warmup.min_steps=100"],
    "train.nesterov": ["train.momentum=0", "train.nesterov=true"],
}
# ... and where each of them does act (a non-default value there loads)
APPLIES_CASES = {
    "data.root": ["data.name=cifar10", "data.root=/elsewhere"],
    "data.crop": ["data.name=folder", "data.loader=stream", "data.crop=128", "data.normalization=per_channel"],
    "train.schedule.milestones": ["train.schedule.milestones=[100]", "train.iterations=200"],
    "train.schedule.warmup.min_steps": ["train.schedule.warmup.kind=error_threshold",
                                        "train.schedule.warmup.min_steps=100"],
    "train.nesterov": ["train.nesterov=true"],
    "data.synthetic_train_size": ["data.synthetic_train_size=500"],
}


def test_every_key_is_written_down_once():
    keys = set(leaf_values(Config()))
    assert keys == ALWAYS | set(INERT_WHEN) and not ALWAYS & set(INERT_WHEN)
    assert set(INERT_CASES) == set(INERT_WHEN)  # each rule is exercised below


@pytest.mark.parametrize("key", sorted(INERT_CASES))
def test_a_key_set_where_it_has_no_effect_is_refused_in_one_line(key, capsys):
    with pytest.raises(ConfigError) as refused:
        load_config(None, INERT_CASES[key])
    message = str(refused.value)
    assert key in message and ("no effect" in message or "only applies" in message) and "\n" not in message
    assert main(["train", *INERT_CASES[key]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0] and "Traceback" not in err[0]


@pytest.mark.parametrize("key", sorted(APPLIES_CASES))
def test_the_same_key_loads_where_it_acts(key):
    load_config(None, APPLIES_CASES[key])


def test_defaults_and_empty_lists_count_as_not_given():
    load_config(None, ["data.name=synthetic", "data.root=data"])  # the default root: not given
    load_config(None, ["train.schedule.name=cosine", "train.schedule.milestones=[]"])


def test_streamed_images_cannot_take_a_per_pixel_mean():
    with pytest.raises(ConfigError, match="per_pixel_mean needs images of one size"):
        load_config(None, ["data.name=folder", "data.loader=stream", "data.normalization=per_pixel_mean"])
