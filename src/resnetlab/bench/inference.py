"""Inference speed of a resnetlab network in several forms, against onnxruntime float32, on the CPU.

Variants (each checked against the eager logits on the same input):

- ``eager``: NCHW, eval mode, BN unfused.
- ``folded``: BN folded into the convolutions (`fuse_for_inference`).
- ``folded_channels_last``: folded, with model and input in ``torch.channels_last`` (NHWC memory), the layout
  oneDNN's convolutions prefer on the CPU.
- ``folded_channels_last_compiled``: the above through ``torch.compile`` (inductor) with ``freezing=True``, which
  treats the weights as constants so inductor can prepack them for oneDNN. The compile time (the first call) is
  reported separately as ``setup_seconds``; it depends on inductor's on-disk cache (a second run is faster).
- ``folded_channels_last_bf16`` and ``folded_channels_last_compiled_bf16``: the two above with weights and
  input in bfloat16 (the whole net, not autocast: inference has no float32 master weights to keep), logits
  returned as float32. Fast where the CPU has AMX-BF16 (or AVX512-BF16) units, slow on AVX2-only CPUs.
- ``onnxruntime``: the folded model exported to ONNX (the torch.export-based exporter, ``dynamo=True``, with a
  dynamic batch axis) and run by an onnxruntime CPU session with all graph optimizations.

Timing: every variant is warmed up, then the variants are interleaved in rounds (round r runs each variant for
``calls_per_round`` calls in turn) so that a slow spell of a shared machine hits all of them alike; each call is
timed alone with `time.perf_counter`, and the median, min and max are over all timed calls.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from resnetlab.deploy.onnx import export_onnx, onnx_runner, quiet_exporters
from resnetlab.models import create_model
from resnetlab.models.fusion import BATCH_NORMS
from resnetlab.training.performance import describe_error

VARIANTS = ("eager", "folded", "folded_channels_last", "folded_channels_last_compiled", "folded_channels_last_bf16",
            "folded_channels_last_compiled_bf16", "onnxruntime")
BF16_SUFFIX = "_bf16"


@dataclass
class VariantResult:
    """One variant's measurement. Times are in seconds; ``status`` is "ok", "skipped" or "failed"."""

    name: str
    status: str = "ok"
    reason: str | None = None  # why skipped or failed, in one line
    setup_seconds: float | None = None  # preparing the variant: folding, export + session, or compile (1st call)
    call_seconds: list[float] = field(default_factory=list)  # every timed call, in order
    max_abs_diff: float | None = None  # max |logits - eager logits|
    rel_diff: float | None = None  # max_abs_diff / max |eager logits|

    @property
    def median_ms(self) -> float:
        return 1e3 * statistics.median(self.call_seconds) if self.call_seconds else math.nan

    @property
    def min_ms(self) -> float:
        return 1e3 * min(self.call_seconds) if self.call_seconds else math.nan

    @property
    def max_ms(self) -> float:
        return 1e3 * max(self.call_seconds) if self.call_seconds else math.nan


@dataclass
class InferenceBenchmark:
    """The measurement of all variants of one model at one image size and batch size."""

    model: str
    image_size: int
    batch_size: int
    rounds: int
    calls_per_round: int
    warmup_calls: int
    threads: int  # torch.get_num_threads(), also onnxruntime's intra-op threads
    results: dict[str, VariantResult] = field(default_factory=dict)

    def images_per_second(self, variant: str) -> float:
        """batch / median call time."""
        return 1e3 * self.batch_size / self.results[variant].median_ms

    def to_dict(self) -> dict:
        """JSON-ready: the fields plus each variant's median/min/max ms and images/s (None where not measured)."""
        out = asdict(self)
        for name, result in self.results.items():
            measured = bool(result.call_seconds)
            out["results"][name].update(
                median_ms=result.median_ms if measured else None, min_ms=result.min_ms if measured else None,
                max_ms=result.max_ms if measured else None,
                images_per_second=self.images_per_second(name) if measured else None)
        return out


class VariantUnavailable(Exception):
    """A variant that cannot run here; the message is the reason, ``status`` "skipped" (a missing package)
    or "failed" (an export or compile error)."""

    def __init__(self, reason: str, status: str = "failed"):
        super().__init__(reason)
        self.status = status


# ---- building the variants: each returns a no-argument callable giving float32 logits as a torch tensor ----
def _randomize_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    """Give every BN non-trivial statistics and affine parameters: a fresh BN is almost the identity, which
    would let a wrong folding pass the logits check."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, BATCH_NORMS) and module.running_mean is not None:
                n = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                if module.weight is not None:
                    module.weight.copy_(0.5 + torch.rand(n, generator=generator))
                    module.bias.copy_(0.1 * torch.randn(n, generator=generator))


@dataclass
class TorchVariant:
    """A torch variant: ``prepare`` puts a float32 NCHW batch in the variant's layout and dtype (outside the
    timing: a channels-last or bf16 pipeline would produce such images), ``forward`` gives float32 logits."""

    prepare: Callable[[torch.Tensor], torch.Tensor]
    forward: Callable[[torch.Tensor], torch.Tensor]


def _build_torch(eager: nn.Module, sample: torch.Tensor, variant: str) -> TorchVariant:
    """The variant of ``eager``; a compiled one is compiled here, on ``sample``'s shape."""
    if variant == "eager":
        return TorchVariant(lambda batch: batch, eager)
    model = copy.deepcopy(eager).fuse_for_inference()
    if variant == "folded":
        return TorchVariant(lambda batch: batch, model)
    base = variant.removesuffix(BF16_SUFFIX)
    if base not in ("folded_channels_last", "folded_channels_last_compiled"):
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    dtype = torch.bfloat16 if variant.endswith(BF16_SUFFIX) else torch.float32
    model = model.to(memory_format=torch.channels_last, dtype=dtype)

    def prepare(batch: torch.Tensor) -> torch.Tensor:
        return batch.to(dtype).contiguous(memory_format=torch.channels_last)

    if base == "folded_channels_last_compiled":
        model = _compile(model, prepare(sample))
    return TorchVariant(prepare, lambda batch: model(batch).float())


def _compile(model: nn.Module, sample: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Compile with inductor freezing; the compile happens at the first call, which must therefore run inside
    the config patch (the compiled graph is kept and no guard depends on the config, so later calls need not)."""
    import torch._inductor.config as inductor_config

    compiled = torch.compile(model)
    try:
        with inductor_config.patch(freezing=True), quiet_exporters():
            compiled(sample)
    except Exception as error:  # noqa: BLE001 (any compile failure: report it and go on without this variant)
        raise VariantUnavailable(f"compile failed: {describe_error(error)[:300]}") from None
    return compiled


def _build_onnxruntime(folded: nn.Module, images: torch.Tensor, directory: str) -> Callable[[], torch.Tensor]:
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError as error:
        raise VariantUnavailable(f"onnxruntime/onnxscript not importable ({error}); pip install -e '.[onnx]'",
                                 "skipped") from None
    path = os.path.join(directory, "model.onnx")
    try:
        export_onnx(folded, images, path)
    except Exception as error:  # noqa: BLE001  (ExportError and whatever the exporter raises)
        raise VariantUnavailable(f"ONNX export failed: {describe_error(error)[:300]}") from None
    run = onnx_runner(path)  # same thread count as PyTorch, no spinning between calls
    return lambda: run(images)


# ---- measuring ----
def measure_inference(model_name: str, image_size: int, batch_size: int, rounds: int = 5, calls_per_round: int = 5,
                      variants: Sequence[str] = VARIANTS, warmup_calls: int = 2, seed: int = 0,
                      **model_options) -> InferenceBenchmark:
    """Time ``variants`` of the registered model ``model_name`` on a random float32 batch of
    ``batch_size`` x 3 x ``image_size`` x ``image_size`` images; check each variant's logits against eager's.

    A variant that cannot run (onnxruntime missing, compile failure) is reported with status "skipped" or
    "failed" and a one-line reason; the others are measured.
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    eager = create_model(model_name, **model_options).eval()
    _randomize_batchnorm(eager, generator)
    images = torch.randn(batch_size, 3, image_size, image_size, generator=generator)
    bench = InferenceBenchmark(model_name, image_size, batch_size, rounds, calls_per_round, warmup_calls,
                               torch.get_num_threads())
    # A fresh dynamo cache per measurement (an earlier model's graphs would count against the recompile limit),
    # but not per variant: resetting between the variants would make the first compiled one compile again inside
    # the timed rounds.
    torch._dynamo.reset()
    runners: dict[str, Callable[[], torch.Tensor]] = {}
    with torch.inference_mode(), tempfile.TemporaryDirectory(prefix="resnetlab-onnx-") as directory:
        reference = eager(images)
        for variant in variants:
            result = bench.results[variant] = VariantResult(variant)
            start = time.perf_counter()
            try:
                if variant == "onnxruntime":
                    runner = _build_onnxruntime(copy.deepcopy(eager).fuse_for_inference(), images, directory)
                else:
                    built = _build_torch(eager, images, variant)  # compiles a compiled variant
                    runner = functools.partial(built.forward, built.prepare(images))
                logits = runner()
            except VariantUnavailable as unavailable:
                result.status, result.reason = unavailable.status, str(unavailable)
                continue
            result.setup_seconds = time.perf_counter() - start
            result.max_abs_diff = (logits.float() - reference).abs().max().item()
            result.rel_diff = result.max_abs_diff / reference.abs().max().item()
            for _ in range(max(warmup_calls - 1, 0)):  # the call above was the first warm-up call
                runner()
            runners[variant] = runner
        for _ in range(rounds):  # interleaved: each variant in turn, calls_per_round calls each
            for variant, runner in runners.items():
                for _ in range(calls_per_round):
                    start = time.perf_counter()
                    runner()
                    bench.results[variant].call_seconds.append(time.perf_counter() - start)
    return bench


@dataclass
class Agreement:
    """How far a variant's logits are from float32 eager's over many images."""

    variant: str
    images: int
    top1_equal: float  # fraction of images with the same top-1 class
    max_rel_diff: float  # worst image's max |logits - eager| / max |eager logits|
    median_rel_diff: float  # the median image's


def measure_agreement(model_name: str, image_size: int, variants: Sequence[str], images: int = 1000,
                      batch_size: int = 50, seed: int = 0, **model_options) -> list[Agreement]:
    """Top-1 agreement and relative logit difference of torch ``variants`` against float32 eager on ``images``
    random images (in batches of ``batch_size``), on the network `measure_inference` times (same seed and BN)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    torch._dynamo.reset()
    eager = create_model(model_name, **model_options).eval()
    _randomize_batchnorm(eager, generator)
    batches = [torch.randn(min(batch_size, images - start), 3, image_size, image_size, generator=generator)
               for start in range(0, images, batch_size)]
    agreements = []
    with torch.inference_mode():
        references = [eager(batch) for batch in batches]
        for variant in variants:
            try:
                built, equal, relative = _build_torch(eager, batches[0], variant), 0, []
            except VariantUnavailable:  # a compile failure: its timing row already says why
                continue
            for batch, reference in zip(batches, references):
                logits = built.forward(built.prepare(batch))
                equal += int((logits.argmax(1) == reference.argmax(1)).sum())
                relative += ((logits - reference).abs().amax(1) / reference.abs().amax(1)).tolist()
            agreements.append(Agreement(variant, images, equal / images, max(relative), statistics.median(relative)))
    return agreements


_SHORT = {"eager": "eager", "onnxruntime": "ORT"}  # column titles of the ratio columns


def format_table(bench: InferenceBenchmark, baselines: Sequence[str] = ("eager", "onnxruntime")) -> str:
    """A text table of ``bench``: time per call (ms), images/s, speed relative to each baseline
    (baseline median / variant median, so > 1 means faster than the baseline), logits differences, setup time."""
    baselines = [b for b in baselines if b in bench.results and bench.results[b].call_seconds]
    header = (f"{'variant':<30} {'median ms':>10} {'min ms':>9} {'max ms':>9} {'images/s':>9} "
              + "".join(f"{'vs ' + _SHORT.get(b, b):>9}" for b in baselines)
              + f" {'max|diff|':>9} {'rel diff':>9} {'setup s':>8}")
    lines = [f"{bench.model} {bench.image_size}x{bench.image_size}, batch {bench.batch_size}, {bench.threads} threads, "
             f"{bench.rounds} rounds x {bench.calls_per_round} calls (after {bench.warmup_calls} warm-up)",
             header, "-" * len(header)]
    for name, result in bench.results.items():
        if not result.call_seconds:
            lines.append(f"{name:<30} {result.status}: {result.reason}")
            continue
        ratios = "".join(f"{bench.results[b].median_ms / result.median_ms:>9.2f}" for b in baselines)
        lines.append(f"{name:<30} {result.median_ms:>10.2f} {result.min_ms:>9.2f} {result.max_ms:>9.2f} "
                     f"{bench.images_per_second(name):>9.1f}{ratios} {result.max_abs_diff:>9.1e} "
                     f"{result.rel_diff:>9.1e} {result.setup_seconds:>8.2f}")
    return "\n".join(lines)
