"""The paper recipes shipped with resnetlab (package data under ``resnetlab/recipes/``), found by name.

A recipe is one YAML file per paper table row, named ``FAMILY/STEM`` (``resnet/table6_cifar10_resnet56``); the
stem alone works when it is unique. `recipe_file` takes a name or a path to any YAML file, so a recipe of one's
own works the same way. The source checkout's ``configs/`` is a link to the same folder.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from resnetlab.config.schema import ConfigError

RECIPE_SUFFIX = ".yaml"


def recipe_root() -> Path:
    """The folder of the shipped recipes (inside the installed package)."""
    return Path(str(resources.files("resnetlab") / "recipes"))


@dataclass(frozen=True)
class Recipe:
    name: str  # FAMILY/STEM, e.g. "resnet/table6_cifar10_resnet56"
    path: Path

    @property
    def stem(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    def summary(self) -> dict:
        """Model, data set and the paper's number, read from the file (for `resnetlab recipes`)."""
        data = yaml.safe_load(self.path.read_text()) or {}
        paper = data.get("paper") or {}
        errors = [(key, value) for key, value in paper.items() if key.endswith("_error")]
        number = f"{errors[0][1]}% ({errors[0][0].removesuffix('_error')} test error)" if errors else "-"
        return {"name": self.name, "model": (data.get("model") or {}).get("name", "-"),
                "data": (data.get("data") or {}).get("name", "-"), "paper": number,
                "source": f"{paper.get('source', '')}, {paper.get('row', '')}".strip(", ")}


def list_recipes(pattern: str | None = None) -> list[Recipe]:
    """Every shipped recipe in name order; ``pattern`` (a shell pattern) matches the name or the stem."""
    root = recipe_root()
    recipes = [Recipe(path.relative_to(root).with_suffix("").as_posix(), path)
               for path in sorted(root.rglob(f"*{RECIPE_SUFFIX}"))]
    if pattern is None:
        return recipes
    return [r for r in recipes if fnmatch.fnmatchcase(r.name, pattern) or fnmatch.fnmatchcase(r.stem, pattern)]


def recipe_file(recipe: str | Path) -> Path:
    """The YAML file of ``recipe``: an existing file as it is, else a shipped recipe's name (with or without
    ``.yaml``, with or without its family); `ConfigError` naming the close matches otherwise."""
    path = Path(recipe)
    if path.is_file():
        return path
    name = str(recipe).removesuffix(RECIPE_SUFFIX)
    recipes = list_recipes()
    matches = [r for r in recipes if name in (r.name, r.stem)]
    if len(matches) == 1:
        return matches[0].path
    if matches:
        raise ConfigError(f"recipe name {name!r} is ambiguous: {', '.join(r.name for r in matches)}; give the "
                          "full name")
    close = difflib.get_close_matches(name, [r.name for r in recipes] + [r.stem for r in recipes], n=4)
    hint = f"did you mean: {', '.join(close)}?" if close else "`resnetlab recipes` lists the recipes"
    what = "config file" if path.suffix in (".yaml", ".yml") else "recipe"
    raise ConfigError(f"{what} {recipe} not found; {hint}")
