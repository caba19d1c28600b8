"""One validated configuration per run: recipes (YAML files or shipped names), ``key=value`` overrides, saved
with every run. The tree of sections is `schema`, reading is `loading`, checking is `validation`, and the shipped
paper recipes are `recipes`."""

from resnetlab.config.loading import (
    apply_overrides,
    config_from_dict,
    load_config,
    read_yaml,
    save_config,
    to_dict,
)
from resnetlab.config.recipes import Recipe, list_recipes, recipe_file, recipe_root
from resnetlab.config.schema import (
    Config,
    ConfigError,
    DataConfig,
    ModelConfig,
    RunConfig,
    ScheduleConfig,
    TrainConfig,
    WarmupConfig,
)
from resnetlab.config.validation import validate

__all__ = ["Config", "ConfigError", "DataConfig", "ModelConfig", "Recipe", "RunConfig", "ScheduleConfig",
           "TrainConfig", "WarmupConfig", "apply_overrides", "config_from_dict", "list_recipes", "load_config",
           "read_yaml", "recipe_file", "recipe_root", "save_config", "to_dict", "validate"]
