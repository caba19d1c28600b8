"""`resnetlab bench` and the training-speed machinery behind benchmarks/: the figures are computed, printed and
saved with their units right (the speeds themselves are measured by the benchmarks, never asserted here)."""

import json
import math

import pytest

from resnetlab.bench.measure import (
    MATMUL_SMALLEST,
    TrainSetup,
    build_training_step,
    matmul_gflops,
    matmul_size,
    measure_training_steps,
)
from resnetlab.bench.training import (
    REFERENCE,
    TRAIN_FLOPS_PER_MULTIPLY_ADD,
    BenchError,
    compare_training,
    resnetlab_setup,
    run_isolated,
)
from resnetlab.cli import main
from resnetlab.layers.stochastic_depth import DropPath
from resnetlab.models.complexity import build_on_meta, count_multiply_adds
from resnetlab.training.step import TrainStep


def test_measure_training_steps_times_every_step_and_reports_memory():
    result = measure_training_steps("resnet20", vars(resnetlab_setup()), batch_size=4, image_size=8, steps=3,
                                    warmup_steps=1)
    assert len(result["step_seconds"]) == 3 and all(s > 0 for s in result["step_seconds"])
    assert result["peak_resident_bytes"] >= result["resident_before_bytes"] > 0
    assert result["compile_failure"] is None


def test_stochastic_depth_setup_draws_new_gates_every_step():
    setup = resnetlab_setup(stochastic_depth={"p_last": 0.2})
    assert setup.model_options == {"stochastic_depth": {"p_last": 0.2}}
    step = build_training_step("resnet20", setup, batch_size=4, image_size=8)
    assert type(step.train_step) is TrainStep  # the trainer's own step, not a copy of it
    gates = [module for module in step.model.modules() if isinstance(module, DropPath)]

    def decisions(index):
        step(index)
        return tuple(gate.last_kept for gate in gates)

    drawn = [decisions(index) for index in range(6)]
    assert len(set(drawn)) >= 3  # p_L = 0.2: 9 gates, most near 50/50, so equal draws are rare
    assert not all(drawn[0]) or not all(drawn[1])  # some units are really dropped
    assert decisions(4) == drawn[4]  # a pure function of the step index, as in training


def test_comparison_puts_the_reference_first_and_derives_gflops_from_multiply_adds():
    setups = [REFERENCE, TrainSetup("channels_last only", channels_last=True)]
    comparison = compare_training("resnet20", setups, batch_size=4, image_size=8, rounds=2, steps=2,
                                  warmup_steps=1, augmentation=True)
    expected_macs = count_multiply_adds(build_on_meta("resnet20"), 8)
    assert comparison.multiply_adds_per_image == expected_macs
    rows = comparison.to_dict()["setups"]
    assert [row["label"] for row in rows] == [s.label for s in setups]
    assert len(rows[0]["step_seconds"]) == 4  # 2 rounds x 2 steps, one process per round
    assert rows[0]["speedup_vs_first"] == 1.0
    for row in rows:
        flops = TRAIN_FLOPS_PER_MULTIPLY_ADD * expected_macs * 4 / row["median_step_seconds"]
        assert math.isclose(row["gflops"], flops / 1e9)
        assert math.isclose(row["fraction_of_matmul_peak"], row["gflops"] / comparison.matmul["median"])
        assert row["images_per_second_min"] <= row["images_per_second"] <= row["images_per_second_max"]
    assert comparison.matmul["min"] <= comparison.matmul["median"] <= comparison.matmul["max"]
    assert len(comparison.augment_batch_seconds) == 2 * 20  # 2 rounds x 20 batches each


def test_a_failing_measurement_process_is_one_clear_error():
    with pytest.raises(BenchError, match="unknown model|no model"):
        run_isolated("train", model="resnet21", setup=vars(REFERENCE), batch_size=2, image_size=8, steps=1)


def test_bench_command_prints_speed_gflops_peak_fraction_and_memory(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "resnet20", "--batch", "4", "--image-size", "8", "--rounds", "1", "--steps", "2",
                 "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "machine:" in printed and "matmul peak" in printed
    for column in ("img/s", "GFLOP/s", "%peak", "peak MiB"):
        assert column in printed
    assert "reference (eager NCHW fp32)" in printed and "resnetlab (channels_last" in printed
    saved = json.loads(out.read_text())
    assert saved["setups"][1]["setup"]["channels_last"] is True and saved["setups"][0]["setup"]["foreach"] is None


def test_bench_precision_bf16_uses_the_bf16_peak_and_writes_the_speedup(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "resnet20", "--precision", "bf16", "--batch", "4", "--image-size", "8", "--rounds", "1",
                 "--steps", "2", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "float32" in printed and "bfloat16" in printed  # both matmul peaks in the header
    saved = json.loads(out.read_text())
    reference, ours = saved["setups"]
    assert reference["precision"] == "fp32" and ours["precision"] == "bf16" and "bf16" in ours["label"]
    assert ours["speedup_vs_first"] == pytest.approx(reference["median_step_seconds"] / ours["median_step_seconds"])
    assert ours["fraction_of_matmul_peak"] == pytest.approx(ours["gflops"] / saved["matmul_bf16"]["median"])
    assert reference["fraction_of_matmul_peak"] == pytest.approx(reference["gflops"] / saved["matmul"]["median"])
    assert main(["bench", "resnet20", "--infer", "--precision", "bf16", "--no-channels-last"]) == 2


def test_bench_infer_in_bf16_times_the_bf16_network(capsys):
    code = main(["bench", "resnet20", "--infer", "--precision", "bf16", "--batch", "2", "--rounds", "1",
                 "--steps", "1"])
    printed = capsys.readouterr().out
    assert code == 0 and "folded_channels_last_bf16" in printed and "precision bf16" in printed


def test_bench_infer_compares_eager_with_the_folded_model(capsys):
    code = main(["bench", "resnet20", "--infer", "--batch", "2", "--rounds", "1", "--steps", "1"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "folded_channels_last" in printed and "GFLOP/s" in printed and "of the matmul peak" in printed


def test_bench_rejects_bad_input_in_one_line(capsys):
    assert main(["bench", "resnet21"]) == 2
    assert main(["bench", "resnet20", "--batch", "1"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("resnetlab: error:") for line in errors)
    assert "--batch" in errors[1]


def test_the_matmul_peak_shrinks_its_size_only_where_a_call_would_be_slow():
    assert matmul_size("float32", largest=512, max_call_seconds=1e9) == 512  # fast enough: grows to the largest
    assert matmul_size("float32", largest=2048, max_call_seconds=0.0) == MATMUL_SMALLEST  # no time: the smallest
    peak = matmul_gflops(size=64, repeats=3)
    assert peak["size"] == 64 and len(peak["gflops"]) == 3
    assert peak["min"] <= peak["median"] <= peak["max"] and peak["median"] > 0
