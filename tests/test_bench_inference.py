"""The inference benchmark measures every variant and each gives the eager logits (small CIFAR net, fast).

The compiled variant is left out: compiling takes tens of seconds on a small CPU machine.
"""

import importlib.util
import json
import math
import sys

import pytest

from resnetlab.bench.inference import format_table, measure_agreement, measure_inference

RELATIVE_TOLERANCE = 1e-4  # float32; folding and other kernels only reorder the sums
# bfloat16 keeps 8 significant bits (a rounding error of up to 0.4% per value); through ResNet-20's 19 layers the
# logits of a random-weight net drift by a few percent of their largest magnitude, not by tens of percent.
BF16_RELATIVE_TOLERANCE = 0.1
TORCH_VARIANTS = ("eager", "folded", "folded_channels_last")
ORT_MISSING = importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnxscript") is None


def measure(variants, image_size=32):
    return measure_inference("resnet20", image_size=image_size, batch_size=2, rounds=1, calls_per_round=1,
                             variants=variants, warmup_calls=1)


def assert_measured_and_agrees(result):
    assert result.status == "ok", result.reason
    assert len(result.call_seconds) == 1 and all(math.isfinite(t) and t > 0 for t in result.call_seconds)
    assert math.isfinite(result.setup_seconds)
    assert result.rel_diff <= RELATIVE_TOLERANCE, (result.name, result.max_abs_diff, result.rel_diff)


def test_torch_variants_are_timed_and_match_eager():
    bench = measure(TORCH_VARIANTS)
    assert list(bench.results) == list(TORCH_VARIANTS)
    for result in bench.results.values():
        assert_measured_and_agrees(result)
    assert bench.results["eager"].max_abs_diff == 0
    assert bench.images_per_second("folded") > 0
    table = format_table(bench)
    assert all(name in table for name in TORCH_VARIANTS)
    json.dumps(bench.to_dict())


@pytest.mark.skipif(ORT_MISSING, reason="onnxruntime or onnxscript not installed (pip install -e '.[onnx]')")
def test_onnxruntime_variant_matches_eager():
    result = measure(("onnxruntime",)).results["onnxruntime"]
    assert_measured_and_agrees(result)


def test_missing_onnxruntime_is_skipped_with_a_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    bench = measure(("onnxruntime",), image_size=8)  # nothing is timed: the smallest input will do
    result = bench.results["onnxruntime"]
    assert result.status == "skipped" and "not importable" in result.reason and not result.call_seconds
    assert bench.to_dict()["results"]["onnxruntime"]["median_ms"] is None
    assert "skipped" in format_table(bench)


def test_unknown_variant_is_an_error():
    with pytest.raises(ValueError, match="unknown variants"):
        measure(("eager", "tensorrt"))


def test_the_bf16_variant_is_timed_and_stays_near_float32():
    result = measure(("eager", "folded_channels_last_bf16")).results["folded_channels_last_bf16"]
    assert result.status == "ok" and len(result.call_seconds) == 1
    assert 0 < result.rel_diff <= BF16_RELATIVE_TOLERANCE  # not zero: the variant really runs in bf16


def test_agreement_counts_top1_and_the_logit_drift():
    float32, bf16 = measure_agreement("resnet20", 32, ("folded_channels_last", "folded_channels_last_bf16"),
                                      images=40, batch_size=16)  # 16, 16, 8: a short last batch too
    assert float32.images == 40 and float32.top1_equal == 1.0 and float32.max_rel_diff <= RELATIVE_TOLERANCE
    assert 0 < bf16.median_rel_diff <= bf16.max_rel_diff <= BF16_RELATIVE_TOLERANCE
    assert 0.5 <= bf16.top1_equal <= 1.0 and (bf16.top1_equal * 40).is_integer()
