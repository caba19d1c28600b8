"""`resnetlab reproduce` and `resnetlab report`: every experiment end to end at the smoke budget, the budgets'
schedule arithmetic, reuse and resume of runs, divergence as a result, and reports rebuilt from their records."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from resnetlab.cli import main
from resnetlab.config import load_config, recipe_root
from resnetlab.data.errors import DataError
from resnetlab.models import create_model
from resnetlab.reproduce.budgets import Plan, data_overrides, shorten_overrides
from resnetlab.reproduce.experiment import Row, get_experiment, list_experiments
from resnetlab.reproduce.experiments.batchnorm import fewer_steps_claim, steps_to_accuracy
from resnetlab.reproduce.experiments.common import ordered_claim
from resnetlab.reproduce.report import close_call_note, spread
from resnetlab.reproduce.results import Stats, load_results
from resnetlab.reproduce.runner import ensure_trained, reproduce, resolve_config, run_name, run_state
from resnetlab.training.probes import TrainingCurve, layer_response_stds, spread_subset
from resnetlab.training.session import train

EXPERIMENTS = ("degradation", "cifar-depth", "layer-responses", "identity-shortcuts", "identity-activations",
               "preact-depth", "stochastic-depth", "batchnorm", "warmup-pilot")  # the issues' lists, in order
RESNET_CIFAR_ITERATIONS = 64000  # He et al. 2015: stop at 64k iterations, lr /10 at 32k and 48k
RESNET_CIFAR_MILESTONES = (32000, 48000)
SD_EPOCHS, SD_MILESTONE_EPOCHS = 500, (250, 375)  # Huang et al. 2016: 500 epochs, /10 at 250 and 375
IDENTITY_WARMUP_ITERATIONS = 400  # He et al. 2016: lr 0.01 for the first 400 iterations (ResNet-110)
QUIET = {"log": lambda message: None, "progress": False}


def test_the_issues_experiments_are_all_registered_in_order():
    assert tuple(e.name for e in list_experiments()) == EXPERIMENTS
    for experiment in list_experiments():
        for row in experiment.rows:
            assert row.recipe_path.is_file(), row.recipe
            load_config(row.recipe_path, list(row.overrides))  # every recipe validates


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_runs_at_smoke_and_writes_its_report(name, smoke_out):
    experiment = get_experiment(name)
    report_dir = reproduce(experiment, "smoke", out_dir=smoke_out, **QUIET)
    results = load_results(report_dir)
    assert [row.label for row in results.rows] == [row.label for row in experiment.rows]
    assert all(run.finished or run.diverged for run in results.runs)
    markdown = (report_dir / "report.md").read_text()
    for row in experiment.rows:  # a table line per row, with the paper's number from its recipe
        line = next(line for line in markdown.splitlines() if line.startswith(f"| {row.label} |"))
        paper = load_config(row.recipe_path).paper.get("cifar10_error")
        if paper is not None:
            assert f"| {paper:.2f} |" in line
    analysis = experiment.analyze(results, report_dir)
    assert analysis.figures and analysis.claims
    for figure in analysis.figures:
        assert (report_dir / figure.file).stat().st_size > 1000 and f"]({figure.file})" in markdown
    assert "<table>" in (report_dir / "report.html").read_text()
    saved = json.loads((report_dir / "results.json").read_text())
    assert len(saved["rows"]) == len(experiment.rows) and len(saved["claims"]) == len(analysis.claims)
    assert "built-in synthetic" in markdown  # the report says these numbers are not about the paper


def test_shortening_keeps_the_recipes_shape():
    resnet = load_config(recipe_root() / "resnet/table6_cifar10_resnet56.yaml")
    assert resnet.train.iterations == RESNET_CIFAR_ITERATIONS
    assert tuple(resnet.train.schedule.milestones) == RESNET_CIFAR_MILESTONES
    short = load_config(recipe_root() / "resnet/table6_cifar10_resnet56.yaml", shorten_overrides(resnet, 600))
    assert short.train.iterations == 600 and tuple(short.train.schedule.milestones) == (300, 450)

    sd = load_config(recipe_root() / "stochastic_depth/table1_cifar10_resnet110_stochastic.yaml")
    assert sd.train.epochs == SD_EPOCHS and tuple(sd.train.schedule.milestones) == SD_MILESTONE_EPOCHS
    short = load_config(recipe_root() / "stochastic_depth/table1_cifar10_resnet110_stochastic.yaml",
                        shorten_overrides(sd, 704))
    assert (short.train.iterations, short.train.epochs, short.train.schedule.unit) == (704, None, "iterations")
    assert tuple(short.train.schedule.milestones) == (352, 528)  # 50% and 75% of the run, as 250/500 and 375/500

    gated = load_config(recipe_root() / "identity_mappings/table1_exclusive_gating_m6.yaml")
    assert gated.train.schedule.warmup.steps == IDENTITY_WARMUP_ITERATIONS
    short = load_config(recipe_root() / "identity_mappings/table1_exclusive_gating_m6.yaml",
                        shorten_overrides(gated, 6400))
    assert short.train.schedule.warmup.steps == IDENTITY_WARMUP_ITERATIONS // 10
    # A run shorter than the first milestone keeps no milestone at all.
    assert load_config(None, shorten_overrides(resnet, 1)).train.schedule.milestones == ()


def test_cheap_budgets_substitute_models_and_say_so():
    experiment = get_experiment("identity-activations")
    plan = experiment.plans["cpu"]
    rows = experiment.rows_for("cpu")
    assert len(rows) == 5 and all("110" in row.label for row in rows)
    models = [resolve_config(row, "cpu", plan, 0, []).model for row in rows]
    assert {m.name for m in models} == {"resnet56"}
    assert models[-1].options["placement"] == "full_preact"  # the pre-activation row stays pre-activation
    assert [m.options.get("placement", "original") for m in models[:4]] == [
        "original", "bn_after_add", "relu_before_add", "relu_only_preact"]
    assert plan.note


@pytest.mark.parametrize("name", ["degradation", "cifar-depth", "layer-responses"])
def test_the_resnet_papers_paper_budget_trains_on_50k_and_reports_the_last_test_error(name):
    # He et al. 2015 chose the schedule on 45k/5k, then trained on all 50k and reported the final test error.
    experiment = get_experiment(name)
    plan = experiment.plans["paper"]
    config = resolve_config(experiment.rows[0], "paper", plan, 0, [])
    assert config.data.validation_size == 0 and plan.metric == "final_test_error"
    assert config.train.iterations == RESNET_CIFAR_ITERATIONS
    assert config.train.eval_every > config.train.iterations  # evaluated once, at the end
    cpu = resolve_config(experiment.rows[0], "cpu", experiment.plans["cpu"], 0, [])
    assert cpu.data.validation_size == 5000  # shortened budgets keep choosing by validation error


def test_rows_option_trains_the_named_rows_only_and_reports_every_row(tmp_path):
    experiment = get_experiment("stochastic-depth")
    second = experiment.rows[1].label
    report = reproduce(experiment, "smoke", out_dir=tmp_path, only_rows=[second], **QUIET,
                       command=f"resnetlab reproduce stochastic-depth --budget smoke --rows '{second}' --no-progress")
    manifest = json.loads((report / "experiment.json").read_text())
    # Every row, in the experiment's order: the claims compare rows by their place (the first is the baseline).
    assert [row["label"] for row in manifest["rows"]] == [row.label for row in experiment.rows]
    assert [len(row["runs"]) for row in manifest["rows"]] == [0, 1] and manifest["pending_runs"] == 1
    assert len(list((tmp_path / "runs").iterdir())) == 1
    assert manifest["plan"]["metric"] == "test_error_at_best_val"
    text = (report / "report.md").read_text()
    assert ("1 of 2 runs have finished; the rest are still to train. `resnetlab reproduce stochastic-depth "
            "--budget smoke --no-progress` goes on") in text  # the command without --rows trains the rest
    # Every claim compares the two rows, so each waits for the one not run, and names it with the length it needs.
    waiting = f"(not run yet: {experiment.rows[0].label}, {experiment.plans['smoke'].iterations:,} iterations at this"
    claims = json.loads((report / "results.json").read_text())["claims"]
    assert claims and all(c["shown"] is None and c["evidence"].startswith(waiting) for c in claims)
    from resnetlab.errors import UsageError

    with pytest.raises(UsageError, match="not a row of stochastic-depth"):
        reproduce(experiment, "smoke", out_dir=tmp_path, only_rows=["ResNet-9"], **QUIET)


def test_a_row_not_run_yet_names_the_stand_in_its_budget_will_train(tmp_path):
    # A partial report lists every row; the "model run" of a pending row is the budget's stand-in, not the recipe's.
    to_resnet20 = {"resnet110": ["model.name=resnet20"],
                   "preact_resnet110": ["model.name=resnet20", "model.placement=full_preact"]}
    rows = [{"label": label, "group": "", "recipe": "recipe.yaml", "recipe_model": model, "runs": []}
            for label, model in (("a", "resnet110"), ("b", "preact_resnet110"), ("c", "resnet56"))]
    (tmp_path / "experiment.json").write_text(json.dumps({"plan": {"substitute": to_resnet20}, "rows": rows}))
    assert [row.model for row in load_results(tmp_path).rows] == ["resnet20", "resnet20", "resnet56"]
    (tmp_path / "experiment.json").write_text(json.dumps({"plan": {}, "rows": rows}))  # a report from before
    assert [row.model for row in load_results(tmp_path).rows] == ["resnet110", "preact_resnet110", "resnet56"]


def test_data_option(tmp_path):
    assert data_overrides(None, "smoke")[0] == "data.name=synthetic"
    assert data_overrides(None, "cpu") == []  # the recipes' own data
    (tmp_path / "cifar-10-batches-py").mkdir()
    assert data_overrides(str(tmp_path), "cpu") == ["data.name=cifar10", f"data.root={tmp_path}"]
    folder = tmp_path / "jpeg"
    (folder / "train").mkdir(parents=True)
    (folder / "test").mkdir()
    assert data_overrides(str(folder), "cpu")[0] == "data.name=folder"
    with pytest.raises(DataError, match="does not exist"):
        data_overrides(str(tmp_path / "missing"), "cpu")
    with pytest.raises(DataError, match="neither"):
        data_overrides(str(folder / "train"), "cpu")


def test_finished_runs_are_reused_and_names_follow_the_config(smoke_out):
    experiment = get_experiment("stochastic-depth")
    reproduce(experiment, "smoke", out_dir=smoke_out, **QUIET)
    plan, row = experiment.plans["smoke"], experiment.rows[0]
    config = resolve_config(row, "smoke", plan, 0, data_overrides(None, "smoke"))
    run_dir = smoke_out / "runs" / run_name(row, "smoke", 0, config)
    summary_time = (run_dir / "summary.json").stat().st_mtime_ns
    messages = []
    reproduce(experiment, "smoke", out_dir=smoke_out, log=messages.append, progress=False)
    assert (run_dir / "summary.json").stat().st_mtime_ns == summary_time
    assert sum("reused" in m for m in messages) == 2
    other_seed = resolve_config(row, "smoke", plan, 1, data_overrides(None, "smoke"))
    assert run_name(row, "smoke", 1, other_seed) != run_dir.name


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path):
    from resnetlab.training.trainer import TrainingInterrupted

    plan = Plan(iterations=6, batch_size=16, curve_every=2, eval_images=16)
    row = Row("ResNet-20", "resnet/table6_cifar10_resnet20.yaml")
    config = resolve_config(row, "smoke", plan, 0, data_overrides(None, "smoke"))
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train(config, run_dir=run_dir, stop_at_iteration=4, probes=[TrainingCurve(2, 16)], **QUIET)
    assert run_state(run_dir) == "partial"
    assert ensure_trained(config, run_dir, plan, device="cpu", **QUIET) == "done"
    curve = [json.loads(line) for line in (run_dir / "curve.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in curve] == [2, 4, 6]  # no record lost or repeated across the resume
    assert json.loads((run_dir / "summary.json").read_text())["iterations"] == 6


def test_a_diverging_row_is_a_result_not_a_crash(tmp_path):
    row = Row("ResNet-20 at lr 1e6", "resnet/table6_cifar10_resnet20.yaml", overrides=("train.lr=1e6",))
    plan = Plan(iterations=8, batch_size=16, curve_every=2)
    config = resolve_config(row, "smoke", plan, 0, data_overrides(None, "smoke"))
    run_dir = tmp_path / "run"
    assert ensure_trained(config, run_dir, plan, device="cpu", **QUIET) == "diverged"
    assert "loss became" in json.loads((run_dir / "diverged.json").read_text())["error"]
    assert run_state(run_dir) == "diverged"
    assert spread(Stats((), diverged=1)) == ("diverged", "-")


def test_a_report_is_rebuilt_from_the_records_in_its_folder(smoke_out, tmp_path):
    source = reproduce(get_experiment("degradation"), "smoke", out_dir=smoke_out, **QUIET)
    copy = tmp_path / "copy"
    result = subprocess.run([sys.executable, "-m", "resnetlab", "report", str(source), "--out", str(copy)], check=False,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads((copy / "results.json").read_text()) == json.loads((source / "results.json").read_text())
    # The numbers are read from the records: change one and the rebuilt table follows.
    run = load_results(copy).row("plain-20").runs[0]
    summary_path = copy / "runs" / run.name / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["test_error_at_best_val"] = 0.1234
    summary_path.write_text(json.dumps(summary))
    subprocess.run([sys.executable, "-m", "resnetlab", "report", str(copy)], check=True, capture_output=True,
                   timeout=120)
    line = next(x for x in (copy / "report.md").read_text().splitlines() if x.startswith("| plain-20 |"))
    assert "| 12.34 |" in line


def test_statistics_and_claims():
    stats = Stats((0.07, 0.06, 0.08, 0.065, 0.075))
    assert stats.median == pytest.approx(0.07) and stats.mean == pytest.approx(0.07)
    assert stats.std == pytest.approx(0.0079057, rel=1e-4)  # sample std (n - 1)
    assert spread(stats) == ("7.00", "7.00 +- 0.79 (n=5)")
    assert Stats((0.05,)).std is None

    class FakeRow:  # one finished run whose error is ``value``
        def __init__(self, label, value):
            self.label, self._value = label, value
            self.runs = [SimpleNamespace(finished=True, diverged=False)]

        def stats(self, key):
            return Stats((self._value,))

    rising = [FakeRow("plain-20", 0.3), FakeRow("plain-56", 0.4)]
    assert ordered_claim("deeper is worse", rising, "x", increasing=True).shown is True
    assert ordered_claim("deeper is better", rising, "x", increasing=False).shown is False
    dipping = [FakeRow("net-20", 0.18), FakeRow("net-32", 0.17), FakeRow("net-44", 0.1714), FakeRow("net-56", 0.16)]
    broken = ordered_claim("test error falls with depth", dipping, "x", increasing=False)
    assert broken.shown is False
    assert broken.evidence.endswith("net-56 16.00. Out of order: net-32 to net-44, 17.00 to 17.14.")  # the one step up
    assert ordered_claim("missing", [rising[0], None], "x", increasing=True).shown is None
    assert ordered_claim("one row orders nothing", rising[:1], "x", increasing=True).shown is None


def test_a_stalled_start_is_noted_from_the_curve():
    from resnetlab.reproduce.experiments.common import stall_notes
    from resnetlab.reproduce.results import ExperimentResults, RowResult, RunRecord

    def row(label, gradients, first_loss=4.4):  # a first window's loss of 4.4, near 2 x chance: a blow-up
        curve = [{"iteration": 50 * (i + 1), "grad_first_conv": g, "train_error": 0.9,
                  "train_loss": first_loss if i == 0 else 2.3} for i, g in enumerate(gradients)]
        run = RunRecord("run", {}, {}, {"iterations": 50 * len(curve)}, [], curve)
        return RowResult(label, "ResNet", "recipe.yaml", "resnet56", "600 iterations", 128, {}, [run])

    results = ExperimentResults({}, [row("steady", [0.011, 0.008, 0.009]),  # a 1.4-fold dip: no note
                                     row("stalled", [0.009, 1e-4, 4e-4, 0.003]),
                                     row("dead", [0.009, 1e-4, 2e-4]),
                                     # The gradient of a plain net shrinks from a large start with no blow-up
                                     # (its loss never above chance, ln 10 = 2.30): slow, not stalled.
                                     row("slow plain net", [0.5, 1e-3, 2e-4], first_loss=2.30)])
    notes = stall_notes(results)
    assert len(notes) == 2
    assert notes[0].startswith("stalled stalled early: its training loss rose to 4.40 (window ending at iteration "
                               "50; chance is 2.30)") and "9.0e-03 (iterations 1-50) to 1.0e-04" in notes[0]
    assert "back above 25% of its first value at iteration 200 (of 200)" in notes[0]
    assert "still below 25% of its first value at the end (of 150)" in notes[1]
    from resnetlab.reproduce.experiment import Claim
    from resnetlab.reproduce.experiments.common import unless_stalled

    claim = Claim("deeper is better", True, "Ours: 80% and 85%.")
    assert unless_stalled(claim, [results.rows[0]]) is claim
    judged = unless_stalled(claim, results.rows[:2])
    assert judged.shown is None and judged.evidence.endswith("Cannot tell at this length: stalled stalled early "
                                                             "(see the notes below).")


def test_claims_over_depth_leave_out_stalled_rows_whichever_way_they_would_point():
    from types import SimpleNamespace

    from resnetlab.reproduce.experiments.common import ordered_among_unstalled

    class Row:
        def __init__(self, label, value, gradients):
            curve = [{"iteration": 50 * (i + 1), "grad_first_conv": g, "train_error": 0.9, "train_loss": 5.0}
                     for i, g in enumerate(gradients)]
            self.label, self._value = label, value
            self.runs = [SimpleNamespace(finished=True, curve=curve)]

        def stats(self, key):
            return Stats((self._value,))

    steady, stalled = [0.01, 0.008, 0.009], [0.01, 1e-4, 2e-4]
    rows = [Row("net-20", 0.40, steady), Row("net-32", 0.45, steady), Row("net-56", 0.90, stalled)]
    worse = ordered_among_unstalled("deeper is worse", rows, "x", increasing=True)
    assert worse.shown is True and worse.evidence == ("Ours (error, %): net-20 40.00, net-32 45.00. Left out: "
                                                      "net-56, stalled early (see the notes below).")
    # The stalled row would have made "deeper is better" fail louder; left out, the clean rows still say no.
    assert ordered_among_unstalled("deeper is better", rows, "x", increasing=False).shown is False
    alone = ordered_among_unstalled("deeper is worse", [rows[0], rows[2]], "x", increasing=True)
    assert alone.shown is None and alone.evidence.startswith("Cannot tell at this length: net-56 stalled early")
    assert ordered_among_unstalled("all clean", rows[:2], "x", increasing=True).evidence.endswith("45.00.")


def test_a_close_verdict_says_whether_its_second_seed_has_run():
    assert close_call_note((), 0.01, {}) == ""  # not close
    owed = close_call_note(("ResNet-20", "ResNet-56"), 0.0146, {"ResNet-20": 2, "ResNet-56": 1})
    assert owed == " (a close call, 1.46 points apart: a second seed of ResNet-56 is still to run)"  # 20's has run
    decided = close_call_note(("a", "b"), 0.005, {"a": 3, "b": 2})
    assert decided == " (a close call, 0.50 points apart: the median over 2 seeds)"


def test_steps_to_accuracy():
    curve = [{"iteration": 100, "val_error": 0.7}, {"iteration": 200, "val_error": 0.45},
             {"iteration": 300, "val_error": 0.35}]
    assert steps_to_accuracy(curve, 0.5) == 200
    assert steps_to_accuracy(curve, 0.65) == 300
    assert steps_to_accuracy(curve, 0.9) is None


def test_a_steps_claim_where_neither_row_reaches_the_target_falls_back_to_accuracy_only_where_it_says_so():
    steps, best = {"bn": None, "plain": None}, {"bn": 0.4745, "plain": 0.1085}  # the cpu run's sigmoid rows
    strict = fewer_steps_claim("bn", "plain", "faster", steps=steps, best=best, target=0.6)
    assert strict.shown is False and "never" in strict.evidence
    trains = fewer_steps_claim("bn", "plain", "trains", steps=steps, best=best, target=0.6,
                               by_accuracy_if_neither_reaches=True)
    assert trains.shown is True and "bn 47.45%, plain 10.85%" in trains.evidence and trains.close_rows == ()
    close = fewer_steps_claim("plain", "bn", "trains", steps=steps, best={"bn": 0.30, "plain": 0.31}, target=0.6,
                              by_accuracy_if_neither_reaches=True)
    assert close.shown is True and close.close_rows == ("plain", "bn") and abs(close.gap - 0.01) < 1e-9
    reached = fewer_steps_claim("bn", "plain", "trains", steps={"bn": 900, "plain": None}, best=best, target=0.6,
                                by_accuracy_if_neither_reaches=True)
    assert reached.shown is True and reached.evidence == "Ours: bn 900, plain never steps to 60%."


def test_layer_responses_follow_the_bn_scale():
    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    images = torch.randn(16, 3, 32, 32)
    before = layer_response_stds(model, [(images, torch.zeros(16, dtype=torch.long))])
    assert len(before) == 19  # the stem and 2 per unit in 9 units: every 3x3 layer of ResNet-20
    assert [layer["norm"] for layer in before[:3]] == ["bn1", "layer1.0.bn1", "layer1.0.bn2"]
    with torch.no_grad():  # doubling gamma and beta doubles that layer's response and its std
        model.layer1[0].bn2.weight.mul_(2)
        model.layer1[0].bn2.bias.mul_(2)
    after = layer_response_stds(model, [(images, torch.zeros(16, dtype=torch.long))])
    assert after[2]["std"] == pytest.approx(2 * before[2]["std"], rel=1e-6)
    assert after[1]["std"] == pytest.approx(before[1]["std"], rel=1e-9)


def test_the_held_out_subset_spans_every_class_of_a_sorted_split():
    # An image folder lists its test images class by class: 10 classes x 100 images here, in batches of 64.
    labels = torch.arange(10).repeat_interleave(100)
    images = torch.arange(1000, dtype=torch.float32).view(1000, 1, 1, 1)
    batches = [(images[i:i + 64], labels[i:i + 64]) for i in range(0, 1000, 64)]
    subset = spread_subset(iter(batches), 1000, 200, batch_size=128)
    kept = torch.cat([chunk for chunk, _ in subset]).flatten()
    kept_labels = torch.cat([chunk for _, chunk in subset])
    assert [len(chunk) for chunk, _ in subset] == [128, 72]
    assert torch.bincount(kept_labels, minlength=10).tolist() == [20] * 10  # the leading 200 would be 2 classes
    assert kept[0] == 0 and kept[-1] == 999 and bool((kept.diff() > 0).all())  # the ends, in order, no repeats
    assert spread_subset(iter(batches), 1000, 5000)[0][1].shape == (500,)  # capped at the split: all 1000 images
    assert spread_subset(iter(batches), 1000, 0) == []


def test_the_curve_keeps_evaluation_out_of_training_time(tmp_path):
    config = load_config(None, ["data.synthetic_train_size=256", "data.synthetic_test_size=64",
                                "data.validation_size=0", "train.batch_size=32", "train.iterations=8"])
    summary = train(config, run_dir=tmp_path / "run", probes=[TrainingCurve(4, eval_images=64)], **QUIET)
    curve = [json.loads(line) for line in (tmp_path / "run" / "curve.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in curve] == [4, 8]
    assert all(r["grad_first_conv"] > 0 and 0 <= r["train_error"] <= 1 and "test_error" in r for r in curve)
    assert summary["train_seconds"] > 0


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "resnetlab", *args], check=False, capture_output=True, text=True,
                          cwd=cwd, timeout=120, env={**os.environ, "RESNETLAB_CACHE": str(Path(cwd) / "cache")})


def run_in_process(*args, capsys) -> tuple[int, str]:
    """``resnetlab ARGS`` through ``main`` in this process (no torch import to pay again): exit code, stderr."""
    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    return code, capsys.readouterr().err


def test_cli_lists_experiments_and_refuses_bad_input_in_one_line(tmp_path, monkeypatch, capsys):
    listing = run_cli("reproduce", "--list", cwd=tmp_path)  # one real process: the entry point and its exit code
    assert listing.returncode == 0 and all(name in listing.stdout for name in EXPERIMENTS)
    lines = {line.split()[0]: line for line in listing.stdout.splitlines() if line.split()[1:2] == ["smoke"]}
    assert "resnet1202 run as model.name=resnet110" in lines["cifar-depth"]  # its ResNet-1202 row
    assert "run as" not in lines["degradation"]  # no stand-in among its rows: none named
    typo = run_cli("reproduce", "degradaton", cwd=tmp_path)
    typo_lines = typo.stderr.strip().splitlines()
    assert typo.returncode == 2 and len(typo_lines) == 1 and "did you mean: degradation" in typo_lines[0], typo.stderr
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "cache"))
    for args, fragment in ((("reproduce",), "name an experiment"),
                           (("reproduce", "batchnorm", "--seeds", "0"), "--seeds must be at least 1"),
                           (("reproduce", "all", "--rows", "ResNet-20"), "--rows names rows of one experiment"),
                           (("reproduce", "batchnorm", "--budget", "cpu", "--data", str(tmp_path / "nope")),
                            "does not exist"),
                           (("reproduce", "batchnorm", "--no-train"), "--no-train: no run of batchnorm"),
                           (("reproduce", "batchnorm", "--no-train", "--precision", "fp32"),
                            "--no-train trains none"),
                           (("report", str(tmp_path)), "not a report folder")):
        code, stderr = run_in_process(*args, capsys=capsys)
        lines = stderr.strip().splitlines()
        assert code == 2 and len(lines) == 1 and fragment in lines[0] and "Traceback" not in stderr, stderr
    code, stderr = run_in_process("reproduce", "all", "--no-train", capsys=capsys)  # each skipped, then one line
    *skipped, last = stderr.strip().splitlines()
    assert code == 2 and len(skipped) == len(EXPERIMENTS) and "no run of any experiment" in last, stderr


def test_cli_precision_reaches_the_runner(tmp_path, monkeypatch, capsys):
    import resnetlab.reproduce.runner as runner

    given = {}

    def record(experiment, budget, **options):
        given.update(options)
        return tmp_path

    monkeypatch.setattr(runner, "reproduce", record)
    assert run_in_process("reproduce", "batchnorm", "--precision", "fp32", capsys=capsys)[0] == 0
    assert given["precision"] == "fp32"
    assert run_in_process("reproduce", "batchnorm", capsys=capsys)[0] == 0 and given["precision"] is None


def test_failing_rows_of_table1_are_marked_in_the_recipes():
    experiment = get_experiment("identity-shortcuts")
    failing = [row.label for row in experiment.rows if load_config(row.recipe_path).paper.get("fail")]
    assert failing == ["constant scaling (0, 1)", "constant scaling (0.5, 1)", "exclusive gating, bias 0",
                       "dropout shortcut (0.5)"]
