"""The model card: what rebuilding and using a trained network needs besides its weights, as a small JSON file.

Written beside every exported model (``model.safetensors`` -> ``model.json``): the registered model name and
its options (so `load_pretrained` rebuilds the architecture from resnetlab's own code, never from the file), the
class names, the input size and test-time resize, and how pixels are normalized. ONNX and TorchScript exports
carry the normalization inside their graph, so they take RGB pixels in [0, 1]; safetensors weights are the raw
network, and the card's normalizer statistics go with them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from resnetlab.data.augment import Normalizer
from resnetlab.errors import ResnetlabError

CARD_VERSION = 1
FORMATS = ("safetensors", "onnx", "torchscript")
SUFFIXES = {"safetensors": ".safetensors", "onnx": ".onnx", "torchscript": ".torchscript.pt"}


class CardError(ResnetlabError, ValueError):
    """A missing or malformed model card; the message names the file and the fix."""


@dataclass(frozen=True)
class ModelCard:
    model: str  # a registered name, as in `resnetlab models`
    options: dict  # create_model keyword arguments (shortcut, stochastic_depth, ...)
    num_classes: int
    classes: list[str]
    image_size: int  # px, the side of the model's input
    eval_resize: int  # px, the shorter side before the centre crop when predicting on an image file
    normalizer: dict  # {"mode", "mean", "std"} as nested lists (pixels in [0, 1])
    format: str = "safetensors"
    normalization_in_graph: bool = False  # ONNX/TorchScript: the graph normalizes its [0, 1] input itself
    fused_bn: bool = False  # BN folded into the convolutions (inference only)
    source: str = ""  # the checkpoint it came from
    version: int = CARD_VERSION
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_trained(cls, trained, format: str, fused_bn: bool) -> ModelCard:
        """The card of a `resnetlab.training.inference.TrainedModel`."""
        options = trained.config.model.create_kwargs(len(trained.classes))
        num_classes = options.pop("num_classes")
        state = trained.normalizer.state_dict()
        normalizer = {"mode": state["mode"], "mean": state["mean"].tolist(),
                      "std": None if state["std"] is None else state["std"].tolist()}
        return cls(trained.config.model.name, options, num_classes, list(trained.classes),
                   trained.image_size, trained.eval_resize, normalizer, format,
                   normalization_in_graph=format != "safetensors", fused_bn=fused_bn,
                   source=str(trained.checkpoint_path))

    def with_provenance(self, checkpoint_path: str | Path, config: dict) -> ModelCard:
        """This card with where the weights came from (`run_provenance`) in ``extra``."""
        return replace(self, extra={**self.extra, "provenance": run_provenance(checkpoint_path, config)})

    def build_normalizer(self) -> Normalizer:
        std = self.normalizer["std"]
        return Normalizer(self.normalizer["mode"], torch.tensor(self.normalizer["mean"], dtype=torch.float32),
                          None if std is None else torch.tensor(std, dtype=torch.float32))

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def read(cls, path: str | Path) -> ModelCard:
        path = Path(path)
        if not path.is_file():
            raise CardError(f"model card {path} not found; it is written beside the exported model by "
                            "`resnetlab export` (keep the two files together)")
        try:
            fields = json.loads(path.read_text())
            card = cls(**fields)
        except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as error:
            raise CardError(f"model card {path} is malformed ({type(error).__name__}: {error}); re-export the "
                            "model") from None
        if card.version > CARD_VERSION or card.format not in FORMATS:
            raise CardError(f"model card {path} has version {card.version} / format {card.format!r}, which this "
                            f"resnetlab (card version {CARD_VERSION}) does not read; upgrade resnetlab")
        return card


def run_provenance(checkpoint_path: str | Path, config: dict) -> dict:
    """What made a trained model: its resolved ``config`` (as plain data), and from its run folder (when the
    files are there) the machine, commit, precision and the run's final numbers."""
    folder = Path(checkpoint_path).parent
    provenance: dict = {"checkpoint": Path(checkpoint_path).name, "config": config}
    machine_keys = ("git_commit", "cpu", "cpu_amx_bf16", "cpu_avx512_bf16", "torch", "precision", "date")
    for name, keys in (("environment.json", machine_keys),
                       ("summary.json", ("final_test_error", "final_test_top5_error", "iterations", "epochs",
                                         "train_seconds", "world_size"))):
        if (folder / name).is_file():
            record = json.loads((folder / name).read_text())
            provenance[name.removesuffix(".json")] = {key: record.get(key) for key in keys if key in record}
    return provenance


def card_path(model_path: str | Path) -> Path:
    """The card beside an exported file: ``x.safetensors``/``x.onnx``/``x.torchscript.pt`` -> ``x.json``."""
    model_path = Path(model_path)
    name = model_path.name
    for suffix in SUFFIXES.values():
        if name.endswith(suffix):
            return model_path.with_name(name[: -len(suffix)] + ".json")
    return model_path.with_suffix(".json")
