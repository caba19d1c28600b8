"""The shipped paper recipes: found by name from anywhere (`resnetlab train NAME`), listed by `resnetlab recipes`."""

import pytest

from paper_facts import HE2015_TABLE6_CIFAR10_ERROR
from resnetlab.cli import main
from resnetlab.config import ConfigError, list_recipes, load_config, recipe_file, recipe_root


def test_a_recipe_is_found_by_its_name_with_or_without_family_and_suffix():
    path = recipe_root() / "resnet" / "table6_cifar10_resnet56.yaml"
    for name in ("table6_cifar10_resnet56", "resnet/table6_cifar10_resnet56", "resnet/table6_cifar10_resnet56.yaml"):
        assert recipe_file(name) == path
    assert load_config("table6_cifar10_resnet56") == load_config(path)


def test_a_file_path_wins_over_a_name(tmp_path, monkeypatch):
    own = tmp_path / "table6_cifar10_resnet56"
    own.write_text("model: {name: resnet20}\n")
    monkeypatch.chdir(tmp_path)
    assert load_config("table6_cifar10_resnet56").model.name == "resnet20"


@pytest.mark.parametrize("name, message", [
    ("table6_cifar10_resnet57", "recipe table6_cifar10_resnet57 not found; did you mean: table6_cifar10_resnet56"),
    ("mine.yaml", "config file mine.yaml not found"),
])
def test_an_unknown_recipe_is_one_line_naming_close_matches(name, message):
    with pytest.raises(ConfigError) as info:
        load_config(name)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_every_recipe_name_is_unique_by_its_stem():
    stems = [recipe.stem for recipe in list_recipes()]
    assert len(stems) == len(set(stems)) >= 50


def test_the_recipes_command_lists_model_data_and_the_papers_number(capsys):
    assert main(["recipes", "table6*"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split()[:4] == ["recipe", "model", "data", "paper"]
    resnet20 = next(row for row in rows if row.startswith("resnet/table6_cifar10_resnet20 "))
    assert resnet20.split()[1:4] == ["resnet20", "cifar10", f"{HE2015_TABLE6_CIFAR10_ERROR['resnet20']}%"]
    assert len([row for row in rows if row.startswith("resnet/table6_")]) == 6
    for depth_row in rows[1:7]:  # every row's number is the paper's, read from its recipe
        name = depth_row.split()[1]
        assert depth_row.split()[3] == f"{HE2015_TABLE6_CIFAR10_ERROR[name]}%"
    assert main(["recipes", "nothing*"]) == 2


def test_train_takes_a_recipe_name(tmp_path, capsys):
    code = main(["train", "table6_cifar10_resnet20", "train.iterations=1", "data.name=synthetic",
                 "data.synthetic_train_size=48", "data.synthetic_test_size=16", "data.validation_size=16",
                 "train.batch_size=16", f"run.out_dir={tmp_path}", "run.name=named"])
    assert code == 0 and "done" in capsys.readouterr().out
    assert (tmp_path / "named" / "last.pt").is_file()
