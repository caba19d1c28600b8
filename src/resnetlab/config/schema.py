"""The config tree: frozen dataclasses, one per section, every key commented with its unit and default.

`resnetlab.config.loading` fills it from YAML and ``key=value`` overrides, `resnetlab.config.validation` checks
it, and `ModelConfig.build` is the one way from a config to a network.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from resnetlab.errors import ResnetlabError
from resnetlab.models import create_model


class ConfigError(ResnetlabError, ValueError):
    """A bad key or value in a config; the message names it and what is allowed."""


@dataclass(frozen=True)
class ModelConfig:
    name: str = "resnet20"  # a name from `resnetlab models`
    num_classes: int | None = None  # None: the data set's number of classes
    options: dict = field(default_factory=dict)  # create_model options: shortcut, stochastic_depth, ...
    checkpoint_segments: int = 0  # activation checkpointing: recompute the units in this many segments (0: off)
    # Under torchrun: BN statistics over the global batch (torch's SyncBatchNorm on GPUs, AllReduceBatchNorm on CPU).
    sync_bn: bool = False
    # Start from trained weights: a torchvision .pth, a resnetlab checkpoint or run folder, a safetensors export, or
    # published weights by name (`resnetlab.published_weights()`); a classifier of another size starts afresh.
    weights: str | None = None

    def create_kwargs(self, data_classes: int | None = None) -> dict:
        """The keyword arguments of `resnetlab.create_model` besides the name: the one way from a config to a
        model (training, evaluation, export, validation). ``data_classes``: the data set's number of classes,
        used when ``num_classes`` is not set."""
        if self.checkpoint_segments and "checkpoint_segments" in self.options:
            raise ConfigError("set model.checkpoint_segments or model.options.checkpoint_segments, not both")
        extra = {"checkpoint_segments": self.checkpoint_segments} if self.checkpoint_segments else {}
        return {"num_classes": self.num_classes or data_classes, **self.options, **extra}

    def build(self, data_classes: int | None = None) -> nn.Module:
        """The network this section describes (on the current default device; see `create_kwargs`)."""
        return create_model(self.name, **self.create_kwargs(data_classes))


@dataclass(frozen=True)
class DataConfig:
    name: str = "synthetic"  # synthetic | cifar10 | cifar100 | folder
    root: str = "data"  # where cifar10/cifar100 live or are downloaded; the image folder for `folder`
    download: bool = False  # fetch CIFAR from its official address when missing (checksum verified)
    validation_size: int = 5000  # held out from the training split (the papers' 45k/5k), seeded
    split_seed: int = 0
    # auto | per_pixel_mean (the ResNet paper) | per_channel. auto: the statistics that come with model.weights
    # (ImageNet's per-channel ones for a torchvision file), else per_pixel_mean computed on the training split.
    normalization: str = "auto"
    augment: bool = True  # pad 4 px, random 32x32 crop, horizontal flip
    skip_bad: bool = False  # skip unreadable images (counted and reported) instead of stopping
    image_size: int | None = None  # resize small image folders to this side (px); None keeps the files' size
    loader: str = "auto"  # memory (decode once, cache; <= 64 px) | stream (workers, ImageNet recipe) | auto
    crop: int = 224  # streamed images: the square crop fed to the model (px)
    scale: tuple[int, ...] = (256, 480)  # streamed training images: shorter side drawn in this range (px)
    eval_resize: int = 256  # streamed evaluation: shorter side before the centre crop (px)
    eval_crop: int | None = None  # streamed evaluation: the centre crop (px; None: data.crop). Fully convolutional
    # nets test on larger crops than they train on (He et al. 2016, Table 5: train 224, test 320)
    ten_crop: bool = False  # streamed evaluation: average the 10 crops (He et al. 2015, Table 3)
    lighting: float = 0.0  # streamed training: AlexNet's PCA colour augmentation, this std (the ResNet paper's: 0.1)
    num_workers: int = 2  # decoding processes for streamed images
    synthetic_train_size: int = 10000
    synthetic_test_size: int = 2000


@dataclass(frozen=True)
class WarmupConfig:
    kind: str = "none"  # none | linear | constant | error_threshold (the paper's rule for ResNet-110/1202)
    steps: int = 0  # iterations of a linear/constant warm-up; a cap for error_threshold (0: no cap)
    lr: float = 0.01  # the warm-up learning rate (start of a linear ramp)
    threshold: float = 0.8  # error_threshold: warm up until the training error falls below this
    min_steps: int = 400  # error_threshold: ... but for at least this many iterations ("about 400", He et al. 2015)


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = "step"  # step | cosine | constant
    milestones: tuple[int, ...] = (32000, 48000)  # in `unit`s; the ResNet paper's CIFAR recipe
    unit: str = "iterations"  # iterations | epochs (milestones and TrainConfig.epochs/iterations)
    gamma: float = 0.1
    warmup: WarmupConfig = field(default_factory=WarmupConfig)


# train.freeze: what stays fixed when fine-tuning: the stem, then stages 1..k as well, or all but the classifier
FREEZE_CHOICES = ("none", "stem", "stage1", "stage2", "stage3", "all-but-head")


@dataclass(frozen=True)
class TrainConfig:
    iterations: int | None = 64000  # stop after this many iterations (the ResNet paper), or
    epochs: int | None = None  # after this many epochs (set one of the two)
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0  # the target puts this much mass on the other classes (0: the papers' one-hot loss)
    freeze: str = "none"  # none | stem | stage1 | stage2 | stage3 | all-but-head: kept fixed (BN statistics too)
    backbone_lr_scale: float = 1.0  # learning rate of all but the classifier, as a fraction of train.lr
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    seed: int = 0
    deterministic: bool = False  # bitwise reproducible on CPU (slower kernels), needed for exact resume
    eval_every: int = 1  # epochs between validation/test evaluations
    checkpoint_every: int = 1  # epochs between checkpoints (also written at the end and on interruption)
    checkpoint_every_minutes: float = 10.0  # also within an epoch, after this much wall time (0: off)
    checkpoint_every_iterations: int = 0  # also within an epoch, every this many iterations (0: off)
    keep_checkpoints: int = 2  # last.pt and the ones before it (last-1.pt, ...): a resume skips an unreadable newest
    channels_last: bool = True  # NHWC activations: oneDNN's fast convolution layout on CPU, tensor cores' on GPU
    compile: bool | None = None  # torch.compile the training step (eager on failure); null: when iterations >= 1000
    # auto | fp32 | bf16: bf16 autocast (weights, optimizer and BN statistics stay float32); auto picks bf16 where
    # the device has fast bf16 units (AMX-BF16 CPUs, bf16 GPUs) and fp32 elsewhere (`training/precision.py`)
    precision: str = "auto"
    tune_allocator: bool = True  # keep freed activation buffers in glibc's heap instead of returning them to the OS


@dataclass(frozen=True)
class RunConfig:
    out_dir: str = "runs"  # run folders go below this
    name: str | None = None  # the run folder's name; None: model-data-timestamp


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    paper: dict = field(default_factory=dict)  # provenance of a recipe: source, table row, reported error
