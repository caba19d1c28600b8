"""A reproduction across sittings and machines: the report is rewritten after every run (marked partial until
the last; at smoke only after the last), and runs recorded in committed report folders (`--reuse`) are taken
instead of trained again."""

import json
import shutil
from dataclasses import replace

import pytest

from resnetlab.config import save_config
from resnetlab.errors import UsageError
from resnetlab.reproduce.budgets import data_overrides
from resnetlab.reproduce.experiment import get_experiment
from resnetlab.reproduce.records import adopt_records, adopt_twin, run_state, trainer_of
from resnetlab.reproduce.report import build_report
from resnetlab.reproduce.results import load_results
from resnetlab.reproduce.runner import close_call_rows, reproduce
from resnetlab.reproduce.runs import find_twins, resolve_config, run_name, training_key
from resnetlab.training.checkpoint import LAST_CHECKPOINT, saved_checkpoints
from resnetlab.training.precision import PRECISION_OPTION

EXPERIMENT = "stochastic-depth"  # two rows, one run each at smoke


class SessionEnded(Exception):
    """Stands for the end of a sitting: the process stops as a run is about to train."""


def _stop_at_second_row(message: str) -> None:
    if message.startswith(f"[{EXPERIMENT} 2/2]"):
        raise SessionEnded


def _with_partial_reports(experiment):
    """The experiment with a smoke plan that rewrites the report before each run, as the longer budgets do."""
    return replace(experiment, plans={**experiment.plans,
                                      "smoke": replace(experiment.plans["smoke"], partial_reports=True)})


def test_an_interrupted_reproduction_leaves_a_partial_report_that_another_machine_finishes(tmp_path):
    experiment = get_experiment(EXPERIMENT)
    first, second = tmp_path / "first_machine", tmp_path / "second_machine"
    with pytest.raises(SessionEnded):
        reproduce(_with_partial_reports(experiment), "smoke", out_dir=first, log=_stop_at_second_row, progress=False)
    report = first / f"{EXPERIMENT}-smoke"
    manifest = json.loads((report / "experiment.json").read_text())
    assert manifest["pending_runs"] == 1
    assert [len(row["runs"]) for row in manifest["rows"]] == [1, 0]
    assert "**Partial report**: 1 of 2 runs have finished" in (report / "report.md").read_text()
    finished = load_results(report).rows[0].runs[0]
    assert finished.finished and not saved_checkpoints(report / "runs" / finished.name / LAST_CHECKPOINT)

    # Only the report folder travels (as a commit would carry it); the other machine trains the second row only.
    committed = tmp_path / "docs" / "results"
    shutil.copytree(report, committed / report.name)
    messages = []
    final = reproduce(experiment, "smoke", out_dir=second, log=messages.append, progress=False, reuse=[committed])
    adopted = [m for m in messages if "records taken from" in m]
    assert len(adopted) == 1 and finished.name in adopted[0]
    assert not saved_checkpoints(second / "runs" / finished.name / LAST_CHECKPOINT)  # not trained again
    results = load_results(final)
    assert all(len(row.runs) == 1 and row.runs[0].finished for row in results.rows)
    assert "pending_runs" not in json.loads((final / "experiment.json").read_text())
    assert "Partial report" not in (final / "report.md").read_text()
    assert results.rows[0].runs[0].summary == finished.summary
    assert "did not all train on one machine" not in (final / "report.md").read_text()  # one machine: one line

    # Had the first sitting run on another CPU in the other precision (bf16 where this one trains in fp32, and the
    # other way round on a CPU with bf16 units), the report would name each run's machine and precision.
    environment_file = final / "runs" / finished.name / "environment.json"
    environment = json.loads(environment_file.read_text())
    here = environment["precision"]["precision"]
    there = "fp32" if here == "bf16" else "bf16"
    elsewhere = {"cpu": "Intel Xeon (another machine)",
                 "precision": {"precision": there, "setting": there, "reason": "set in the config"}}
    environment_file.write_text(json.dumps({**environment, **elsewhere}))
    text = build_report(final).read_text()
    assert "did not all train on one machine or in one precision:" in text  # one commit: no commit column
    assert "| row | seed | machine | precision | training time |" in text
    per_run = [line for row in results.rows for line in text.splitlines() if line.startswith(f"| {row.label} | 0 | ")]
    assert len(per_run) == 2 and "Intel Xeon (another machine)" in per_run[0] and there in per_run[0]
    assert "Intel Xeon" not in per_run[1] and here in per_run[1] and there not in per_run[1]

    # A run that another machine resumed names both, each with the iteration it trained from.
    environment_file.write_text(json.dumps({**environment, "resumed": [{**environment, **elsewhere,
                                                                         "at_iteration": 3}]}))
    text = build_report(final).read_text()
    resumed_line = next(line for line in text.splitlines() if line.startswith(f"| {results.rows[0].label} | 0 | "))
    assert "(from iteration 0); Intel Xeon (another machine)" in resumed_line
    assert f"| {here} (from iteration 0); {there} (from iteration 3) |" in resumed_line


def test_smoke_writes_its_report_once_and_longer_budgets_before_each_run(tmp_path, monkeypatch):
    import resnetlab.reproduce.runner as runner

    built = []
    monkeypatch.setattr(runner, "build_report", lambda folder: built.append(folder))
    experiment = get_experiment(EXPERIMENT)
    assert experiment.plans["cpu"].partial_reports and not experiment.plans["smoke"].partial_reports
    reproduce(experiment, "smoke", out_dir=tmp_path / "once", log=lambda m: None, progress=False)
    assert len(built) == 1  # two runs trained, the report built after the last
    with pytest.raises(SessionEnded):
        reproduce(experiment, "smoke", out_dir=tmp_path / "never", log=_stop_at_second_row, progress=False)
    assert len(built) == 1 and not (tmp_path / "never" / f"{EXPERIMENT}-smoke" / "report.md").exists()
    reproduce(_with_partial_reports(experiment), "smoke", out_dir=tmp_path / "each", log=lambda m: None,
              progress=False)
    assert len(built) == 3  # before the second run, and after it


def test_finished_runs_are_taken_before_any_trains_and_no_train_reports_them_alone(tmp_path):
    experiment = get_experiment(EXPERIMENT)
    first, second, committed = tmp_path / "first_machine", tmp_path / "second_machine", tmp_path / "committed"
    second_row = experiment.rows[1].label
    quiet = {"log": lambda m: None, "progress": False}
    shutil.copytree(reproduce(experiment, "smoke", out_dir=first, only_rows=[second_row], **quiet),
                    committed / f"{EXPERIMENT}-smoke")
    with pytest.raises(UsageError, match="--no-train: no run of stochastic-depth at the smoke budget has finished"):
        reproduce(experiment, "smoke", out_dir=second, train_missing=False, **quiet)

    report = reproduce(experiment, "smoke", out_dir=second, reuse=[committed], train_missing=False,
                       command="resnetlab reproduce stochastic-depth --no-train --reuse committed", **quiet)
    manifest = json.loads((report / "experiment.json").read_text())
    assert manifest["pending_runs"] == 1 and [len(row["runs"]) for row in manifest["rows"]] == [0, 1]
    assert [run.name for run in (second / "runs").iterdir()] == manifest["rows"][1]["runs"]  # nothing trained
    text = (report / "report.md").read_text()
    assert ("1 of 2 runs have finished; the rest are still to train. `resnetlab reproduce stochastic-depth "
            "--reuse committed` goes on") in text
    assert "wall time of its last sitting (runs trained in it: 0; finished runs reused: 1)" in text

    # A sitting that ends while the first row trains has already reported the second row's finished run.
    def stop_when_training_starts(message: str) -> None:
        if message.startswith(f"[{EXPERIMENT} 1/2]") and not message.endswith("reused"):
            raise SessionEnded

    shutil.rmtree(report)
    with pytest.raises(SessionEnded):  # (smoke's plan writes its report at the end only: here before each run)
        reproduce(_with_partial_reports(experiment), "smoke", out_dir=second, reuse=[committed],
                  log=stop_when_training_starts, progress=False)
    assert json.loads((report / "experiment.json").read_text())["rows"] == manifest["rows"]


def test_precision_trains_a_sittings_runs_in_it_under_the_names_they_have_without_it(tmp_path):
    experiment = get_experiment(EXPERIMENT)
    report = reproduce(experiment, "smoke", out_dir=tmp_path, precision="fp32", log=lambda m: None, progress=False)
    plan, data = experiment.plans["smoke"], data_overrides(None, "smoke")
    names = [run_name(row, "smoke", 0, resolve_config(row, "smoke", plan, 0, data)) for row in experiment.rows]
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == sorted(names)
    for name in names:
        environment = json.loads((tmp_path / "runs" / name / "environment.json").read_text())
        assert environment["precision"] == {"precision": "fp32", "setting": "fp32", "reason": PRECISION_OPTION}
    assert "Arithmetic: precision fp32 (set with --precision)." in (report / "report.md").read_text()


def test_records_are_adopted_only_when_they_hold_what_the_experiment_measures(tmp_path):
    recorded = tmp_path / "docs" / "layer-responses-cpu" / "runs" / "plain20-cpu-s0-abc"
    recorded.mkdir(parents=True)
    (recorded / "config.yaml").write_text("model: {name: plain20}\n")
    target = tmp_path / "runs" / "plain20-cpu-s0-abc"
    assert adopt_records(target, [tmp_path / "docs"]) is None  # unfinished: no summary
    (recorded / "summary.json").write_text("{}")
    assert adopt_records(target, [tmp_path / "docs"], needed=("layer_responses.json",)) is None
    (recorded / "layer_responses.json").write_text("{}")
    assert adopt_records(target, [tmp_path / "docs"], needed=("layer_responses.json",)) == recorded
    assert run_state(target) == "done" and (target / "layer_responses.json").is_file()


def test_reuse_of_a_folder_without_reports_is_refused_in_one_line(tmp_path):
    for folder in (tmp_path / "nowhere", tmp_path):
        with pytest.raises(UsageError, match="--reuse: .* holds no report folder"):
            reproduce(get_experiment(EXPERIMENT), "smoke", out_dir=tmp_path, reuse=[folder], log=lambda m: None,
                      progress=False)


def test_a_run_reused_without_its_measurements_takes_them_from_records_that_have_them(tmp_path):
    machine_a, machine_b, committed = tmp_path / "a", tmp_path / "b", tmp_path / "committed"
    degradation, responses = get_experiment("degradation"), get_experiment("layer-responses")
    quiet = {"log": lambda m: None, "progress": False, "only_rows": ["plain-20"]}
    shutil.copytree(reproduce(degradation, "smoke", out_dir=machine_a, **quiet), committed / "degradation-smoke")
    reproduce(degradation, "smoke", out_dir=machine_b, reuse=[committed], **quiet)  # records only, no checkpoint
    with pytest.raises(UsageError, match="neither a checkpoint nor layer_responses.json"):
        reproduce(responses, "smoke", out_dir=machine_b, **quiet)
    shutil.copytree(reproduce(responses, "smoke", out_dir=machine_a, **quiet), committed / "layer-responses-smoke")
    report = reproduce(responses, "smoke", out_dir=machine_b, reuse=[committed], **quiet)
    plain20 = next(row for row in load_results(report).rows if row.label == "plain-20")
    assert plain20.runs[0].extras["layer_responses"]["layers"]


def test_a_close_call_at_one_seed_runs_a_second_seed_for_its_rows_only(tmp_path, monkeypatch):
    import resnetlab.reproduce.runner as runner_module

    registered = get_experiment(EXPERIMENT)
    plans = {**registered.plans, "smoke": replace(registered.plans["smoke"], second_seed_if_close=True)}
    experiment = replace(registered, plans=plans)
    close = registered.rows[1].label
    monkeypatch.setattr(runner_module, "close_call_rows", lambda report_dir: [close])
    # With --rows, a second seed waits until every row has its first: the rows not trained could change the call.
    report = reproduce(experiment, "smoke", out_dir=tmp_path, only_rows=[close], log=lambda m: None, progress=False)
    manifest = json.loads((report / "experiment.json").read_text())
    assert manifest["seeds"] == [0] and [len(row["runs"]) for row in manifest["rows"]] == [0, 1]
    report = reproduce(experiment, "smoke", out_dir=tmp_path, log=lambda m: None, progress=False)
    manifest = json.loads((report / "experiment.json").read_text())
    assert manifest["seeds"] == [0, 1] and manifest["second_seed_rows"] == [close]
    assert [len(row["runs"]) for row in manifest["rows"]] == [1, 2]
    seed0, seed1 = manifest["rows"][1]["runs"]
    assert "-smoke-s0-" in seed0 and "-smoke-s1-" in seed1
    assert f"A second seed is given to {close} only" in (report / "report.md").read_text()


def test_close_calls_are_read_from_the_reports_claims(tmp_path):
    claims = [{"statement": "a", "shown": True, "evidence": "", "close_rows": ["ResNet-20", "ResNet-56"], "gap": 0.019},
              {"statement": "b", "shown": False, "evidence": "", "close_rows": [], "gap": 0.021},
              {"statement": "c", "shown": True, "evidence": "", "close_rows": [], "gap": None}]  # not between errors
    (tmp_path / "results.json").write_text(json.dumps({"claims": claims}))
    assert close_call_rows(tmp_path) == ["ResNet-20", "ResNet-56"]


# At smoke, identity-shortcuts' identity row and identity-activations' row (a) are one training: the same
# ResNet-110 recipe, budget and seed; only the recipes' notes of their paper table differ.
SHORTCUT_IDENTITY, ACTIVATION_ORIGINAL = "original (identity)", "ResNet-110 (a) original"


SMOKE_PLAN = get_experiment("identity-activations").plans["smoke"]


def _smoke_config(experiment_name: str, label: str, *overrides: str):
    experiment = get_experiment(experiment_name)
    row = next(row for row in experiment.rows_for("smoke") if row.label == label)
    plan = experiment.plans["smoke"]
    return row, resolve_config(row, "smoke", plan, 0, list(overrides))


def _finished_run(folder, experiment_name: str, label: str, *overrides: str, curve_every: int = SMOKE_PLAN.curve_every):
    """The records of a finished smoke run, its curve's first point as the smoke plan records it."""
    row, config = _smoke_config(experiment_name, label, *overrides)
    run_dir = folder / run_name(row, "smoke", 0, config)
    run_dir.mkdir(parents=True)
    save_config(config, run_dir / "config.yaml")
    (run_dir / "summary.json").write_text("{}")
    point = {"iteration": curve_every, f"{SMOKE_PLAN.eval_split}_error": 0.5}
    (run_dir / "curve.jsonl").write_text(json.dumps(point) + "\n" + json.dumps({**point, "iteration": 2}) + "\n")
    return run_dir


def test_a_twin_is_a_finished_run_of_another_recipe_with_every_setting_but_the_paper_note_the_same(tmp_path):
    row, config = _smoke_config("identity-activations", ACTIVATION_ORIGINAL)
    target = tmp_path / "here" / run_name(row, "smoke", 0, config)
    _, twin_config = _smoke_config("identity-shortcuts", SHORTCUT_IDENTITY)
    assert twin_config.paper != config.paper and training_key(twin_config) == training_key(config)
    elsewhere, plan = tmp_path / "elsewhere", SMOKE_PLAN
    assert find_twins(config, target, [elsewhere], plan) == []

    _finished_run(elsewhere, "identity-shortcuts", SHORTCUT_IDENTITY, "train.lr=0.05")  # trained otherwise
    _finished_run(elsewhere, "identity-activations", "ResNet-110 (b) BN after addition")  # another net
    assert find_twins(config, target, [elsewhere], plan) == []
    twin = _finished_run(elsewhere, "identity-shortcuts", SHORTCUT_IDENTITY)
    assert find_twins(config, target, [elsewhere], plan) == [twin]
    # Its curve, recorded at another spacing or without the held-out split, is not what this plan records.
    assert find_twins(config, target, [elsewhere], replace(plan, curve_every=5)) == []
    assert find_twins(config, target, [elsewhere], replace(plan, eval_split="val")) == []
    # What an experiment measures must be in the records, or a checkpoint must be there to measure it on.
    assert find_twins(config, target, [elsewhere], plan, needed=("layer_responses.json",)) == []
    (twin / LAST_CHECKPOINT).write_bytes(b"checkpoint")
    assert find_twins(config, target, [elsewhere], plan, needed=("layer_responses.json",)) == [twin]
    (twin / "summary.json").unlink()
    assert find_twins(config, target, [elsewhere], plan) == []  # unfinished


def test_a_twin_brings_its_checkpoint_and_names_the_run_that_trained_never_the_run_itself(tmp_path):
    trained = _finished_run(tmp_path, "identity-shortcuts", SHORTCUT_IDENTITY)
    (trained / LAST_CHECKPOINT).write_bytes(b"checkpoint")
    taken = tmp_path / "table2_resnet110_original-smoke-s0-00000000"
    assert adopt_twin(taken, trained) == trained.name
    assert json.loads((taken / "twin_of.json").read_text()) == {"run": trained.name}
    assert (taken / LAST_CHECKPOINT).read_bytes() == b"checkpoint"
    twice = tmp_path / "table3_cifar10_resnet110_original-smoke-s0-00000000"
    assert adopt_twin(twice, taken) == trained.name  # a twin's twin: the run that trained
    shutil.rmtree(trained)  # removed to train again, then its records are found in the run that took them
    assert adopt_twin(trained, taken) == trained.name
    assert run_state(trained) == "done" and not (trained / "twin_of.json").exists()


def test_a_run_whose_twin_has_finished_is_taken_from_it_and_the_report_names_the_twin(tmp_path):
    quiet = {"log": lambda m: None, "progress": False}
    here, there, committed = tmp_path / "here", tmp_path / "there", tmp_path / "committed"
    shortcuts = reproduce(get_experiment("identity-shortcuts"), "smoke", out_dir=here, only_rows=[SHORTCUT_IDENTITY],
                          **quiet)
    trained = next((here / "runs").iterdir())
    messages = []
    report = reproduce(get_experiment("identity-activations"), "smoke", out_dir=here,
                       only_rows=[ACTIVATION_ORIGINAL], log=messages.append, progress=False)
    assert any(f"its records taken from its twin {trained}" in m for m in messages)
    manifest = json.loads((report / "experiment.json").read_text())
    assert manifest["runs_trained"] == 0 and manifest["runs_reused"] == 1 and manifest["pending_runs"] == 9
    taken = manifest["rows"][0]["runs"][0]
    assert taken != trained.name and saved_checkpoints(here / "runs" / taken / LAST_CHECKPOINT)  # measurable
    row = load_results(report).rows[0]
    assert row.runs[0].summary == json.loads((trained / "summary.json").read_text())
    results = json.loads((report / "results.json").read_text())
    assert results["rows"][0]["twin_of"] == {taken: trained.name}
    assert "twin_of" not in load_results(shortcuts).rows[0].runs[0].extras  # the run that trained has no note
    assert ("Runs taken from a twin, a finished run of another recipe whose config differs only in its note of "
            "the paper") in (report / "report.md").read_text()
    assert f"{ACTIVATION_ORIGINAL}, seed 0: {trained.name}" in (report / "report.md").read_text()

    # Another machine finds the twin in the committed report of the experiment that trained it (records only).
    shutil.copytree(shortcuts, committed / shortcuts.name)
    elsewhere = reproduce(get_experiment("identity-activations"), "smoke", out_dir=there,
                          only_rows=[ACTIVATION_ORIGINAL], reuse=[committed], **quiet)
    assert json.loads((elsewhere / "results.json").read_text())["rows"][0]["twin_of"] == {taken: trained.name}
    assert not saved_checkpoints(there / "runs" / taken / LAST_CHECKPOINT)


PREACT_DEPTH_ORIGINAL = "ResNet-110 original"  # a third recipe that trains what the other two do, at smoke


def test_the_first_twin_found_is_taken_the_others_named_and_no_twins_trains_the_run(tmp_path):
    quiet = {"log": lambda m: None, "progress": False}
    here, fresh, apart = tmp_path / "here", tmp_path / "fresh", [tmp_path / "a", tmp_path / "b"]
    for out_dir, experiment, label in zip(apart, ("identity-shortcuts", "preact-depth"),
                                          (SHORTCUT_IDENTITY, PREACT_DEPTH_ORIGINAL), strict=True):
        reproduce(get_experiment(experiment), "smoke", out_dir=out_dir, only_rows=[label], **quiet)  # apart
    first, second = (next((out_dir / "runs").iterdir()) for out_dir in apart)
    messages = []
    report = reproduce(get_experiment("identity-activations"), "smoke", out_dir=here, only_rows=[ACTIVATION_ORIGINAL],
                       reuse=apart, log=messages.append, progress=False)
    taken = json.loads((report / "experiment.json").read_text())["rows"][0]["runs"][0]
    assert trainer_of(here / "runs" / taken) == first.name
    assert any(f"{taken}: other twins, trained apart from the one taken (the first found), were left: "
               f"{second.name}" in m for m in messages)

    # --no-twins trains it, passing over the twin's records committed under the run's own name too.
    report = reproduce(get_experiment("identity-activations"), "smoke", out_dir=fresh, only_rows=[ACTIVATION_ORIGINAL],
                       reuse=[here], twins=False, **quiet)
    manifest = json.loads((report / "experiment.json").read_text())
    assert manifest["runs_trained"] == 1 and manifest["rows"][0]["runs"] == [taken]
    assert trainer_of(fresh / "runs" / taken) == taken and run_state(fresh / "runs" / taken) == "done"
    assert adopt_records(tmp_path / "elsewhere" / taken, [here], own_only=True) is None
    # A run folder holding a twin's records is refused, not trained over (its copy may be the only one left).
    with pytest.raises(UsageError, match=f"--no-twins: .*{taken} holds the records of its twin {first.name}"):
        reproduce(get_experiment("identity-activations"), "smoke", out_dir=here, only_rows=[ACTIVATION_ORIGINAL],
                  twins=False, **quiet)
    assert trainer_of(here / "runs" / taken) == first.name
