"""Training times in the reports: a run resumed on another machine is timed per machine, and the stochastic-depth
time claim compares the two rows only on a machine that trained both."""

from __future__ import annotations

from resnetlab.reproduce.experiments.stochastic_depth import CONSTANT, STOCHASTIC, _time_claim
from resnetlab.reproduce.results import RowResult, RunRecord

ZEN3 = {"cpu": "AMD EPYC", "cpu_amx_bf16": False, "cpu_avx512_bf16": False, "cpu_count": 2, "torch_threads": 2,
        "precision": {"precision": "fp32"}}
XEON = {"cpu": "Intel Xeon", "cpu_amx_bf16": True, "cpu_avx512_bf16": True, "cpu_count": 2, "torch_threads": 2,
        "precision": {"precision": "bf16"}}
ZEN3_FP32 = "AMD EPYC (no bf16 units), 2 CPUs, 2 torch threads, fp32"
XEON_BF16 = "Intel Xeon (AMX-BF16), 2 CPUs, 2 torch threads, bf16"


def epochs(seconds: list[float], length: int = 4) -> list[dict]:
    """Epoch records of ``length`` iterations each, with their training seconds."""
    return [{"epoch": i + 1, "iteration": (i + 1) * length, "epoch_seconds": s} for i, s in enumerate(seconds)]


def run_record(environment: dict, seconds: list[float]) -> RunRecord:
    iterations = 4 * len(seconds)
    return RunRecord("run", {}, environment, {"iterations": iterations, "train_seconds": sum(seconds)},
                     epochs(seconds), [])


def row(label: str, environment: dict, seconds: list[float]) -> RowResult:
    return RowResult(label, "", "", "resnet110", "", 128, {}, [run_record(environment, seconds)])


def test_a_resumed_run_is_timed_per_machine_and_the_epoch_cut_by_the_resume_is_left_out():
    resumed = {**ZEN3, "resumed": [{**XEON, "at_iteration": 6}]}  # the Xeon went on from mid-epoch 2
    times = run_record(resumed, [10.0, 9.0, 3.0, 2.0]).training_time_by_machine()
    assert times == {ZEN3_FP32: (10.0, 4), XEON_BF16: (5.0, 8)}  # epoch 2 (iterations 4-8) held both machines
    assert run_record(ZEN3, [10.0, 9.0]).training_time_by_machine() == {ZEN3_FP32: (19.0, 8)}


def test_machines_are_told_apart_by_what_sets_their_speed_and_lost_records_time_nothing():
    older = {key: value for key, value in ZEN3.items() if key != "cpu_avx512_bf16"}  # before the field existed
    assert set(run_record(older, [1.0]).training_time_by_machine()) == {ZEN3_FP32}
    oldest = {key: value for key, value in older.items() if key != "cpu_amx_bf16"}  # says nothing of bf16 units
    assert set(run_record(oldest, [1.0]).training_time_by_machine()) == {"AMD EPYC, 2 CPUs, 2 torch threads, fp32"}
    on_gpu = run_record({**ZEN3, "gpus": ["NVIDIA H200"]}, [1.0]).training_time_by_machine()
    two_processes = run_record({**ZEN3, "world_size": 2}, [1.0]).training_time_by_machine()
    assert set(on_gpu) == {"AMD EPYC (no bf16 units), 2 CPUs, 2 torch threads, GPU NVIDIA H200, fp32"}
    assert set(two_processes) == {"AMD EPYC (no bf16 units), 2 CPUs, 2 torch threads, 2 processes, fp32"}
    unrecorded = {"seed": 0, "unrecorded": True, "resumed": [{**ZEN3, "at_iteration": 4}]}
    assert run_record(unrecorded, [5.0, 1.0]).training_time_by_machine() == {ZEN3_FP32: (1.0, 4)}


def test_the_time_claim_compares_the_rows_on_a_machine_that_trained_both():
    constant = row(CONSTANT, {**ZEN3, "resumed": [{**XEON, "at_iteration": 8}]}, [10.0, 10.0, 4.0, 4.0])
    stochastic = row(STOCHASTIC, {**XEON, "resumed": [{**ZEN3, "at_iteration": 4}]}, [3.0, 7.0, 7.0, 7.0])
    claim = _time_claim(constant, stochastic)
    # Zen 3 trained 8 and 12 iterations (10 vs 7 s per 4); the Xeon 8 and 4: Zen 3 holds more of both.
    assert claim.shown is True
    assert "30.0% less time per iteration (2500 vs 1750 ms" in claim.evidence and ZEN3_FP32 in claim.evidence


def test_the_time_claim_cannot_tell_when_no_machine_trained_both_rows():
    # Whole-run times would read as a 70% saving: the Xeon in bf16, not stochastic depth.
    claim = _time_claim(row(CONSTANT, ZEN3, [10.0, 10.0]), row(STOCHASTIC, XEON, [3.0, 3.0]))
    assert claim.shown is None and "no machine trained both rows" in claim.evidence
    slower = _time_claim(row(CONSTANT, ZEN3, [10.0, 10.0]), row(STOCHASTIC, ZEN3, [11.0, 11.0]))
    assert slower.shown is False and "-10.0% less time" in slower.evidence
    untimed = row(STOCHASTIC, ZEN3, [])
    untimed.runs[0].summary["iterations"] = 8
    assert "no timed epochs in the records of ResNet-110 stochastic depth" in _time_claim(
        row(CONSTANT, ZEN3, [10.0]), untimed).evidence
