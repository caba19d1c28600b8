"""What `resnetlab eval` evaluates, opened from any saved form, and the data it reads.

A run folder or checkpoint brings its own data config and normalizer (``--data`` swaps in another image folder
with the same classes). An export brings its card: a safetensors file is rebuilt by `load_pretrained` and fed
the card's normalization; ONNX and TorchScript graphs normalize their [0, 1] input themselves. An export reads
the data its card's provenance names (a run's export records it) unless ``--data`` names a folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from resnetlab.config import DataConfig, config_from_dict
from resnetlab.data.augment import Normalizer
from resnetlab.deploy.card import SUFFIXES, ModelCard, card_path
from resnetlab.errors import UsageError
from resnetlab.training.performance import memory_format


@dataclass
class Subject:
    """A model ready to evaluate: ``forward`` maps batches of ``data`` (normalized by ``normalizer``) to logits."""

    forward: Callable[[torch.Tensor], torch.Tensor]
    classes: list[str]
    data: DataConfig
    normalizer: Normalizer
    description: str
    default_out: Path  # where the files go unless --out says otherwise


def pixels_in_unit_range() -> Normalizer:
    """A normalizer that only scales pixels to [0, 1] (for graphs that normalize inside)."""
    return Normalizer("per_channel", torch.zeros(3, 1, 1), torch.ones(3, 1, 1))


def open_subject(source: str | Path, data_root: str | Path | None, device: str = "cpu") -> Subject:
    from resnetlab.deploy.published import resolve_weights

    source = resolve_weights(source)
    if any(source.name.endswith(suffix) for suffix in SUFFIXES.values()):
        return _open_export(source, data_root, device)
    from resnetlab.training.inference import load_trained_model

    trained = load_trained_model(source, device=device)
    layout = memory_format(trained.config.train.channels_last)  # as the run's own evaluations ran
    model = trained.model.to(memory_format=layout)
    data = trained.config.data if data_root is None else _other_folder(trained.config.data, data_root)
    run_dir = source if source.is_dir() else source.parent
    return Subject(lambda images: model(images.contiguous(memory_format=layout)), list(trained.classes), data,
                   trained.normalizer, f"{trained.checkpoint_path} ({trained.config.model.name})", run_dir / "eval")


def _open_export(path: Path, data_root: str | Path | None, device: str) -> Subject:
    from resnetlab.deploy.pretrained import load_predictor, load_pretrained

    card = ModelCard.read(card_path(path))
    recorded = card.extra.get("provenance", {}).get("config", {}).get("data")
    if data_root is None and recorded is None:
        raise UsageError(f"{path} does not record the data it was trained on; give --data ROOT (an image folder "
                         "with train/ and test/ class folders)")
    data = config_from_dict({"data": recorded}).data if recorded else DataConfig(
        name="folder", root=str(data_root), validation_size=0, augment=False,
        image_size=card.image_size if card.image_size <= 64 else None, crop=card.image_size,
        eval_resize=card.eval_resize)
    if data_root is not None and recorded:
        data = _other_folder(data, data_root)
    default_out = Path("runs") / "eval" / card_path(path).stem
    if card.format == "safetensors":
        layout = torch.channels_last
        model = load_pretrained(path, device).to(memory_format=layout)
        return Subject(lambda images: model(images.contiguous(memory_format=layout)), list(card.classes), data,
                       card.build_normalizer(), f"{path} ({card.model}, safetensors)", default_out)
    predictor = load_predictor(path, device)
    return Subject(predictor.forward, list(card.classes), data, pixels_in_unit_range(), predictor.description,
                   default_out)


def _other_folder(data: DataConfig, root: str | Path) -> DataConfig:
    """The run's data settings on another image folder (its own test split; no validation hold-out)."""
    if not Path(root).expanduser().is_dir():
        raise UsageError(f"--data {root} is not a folder; give an image folder with train/ and test/ class folders "
                         "(or class folders directly)")
    return replace(data, name="folder", root=str(root), validation_size=0)
