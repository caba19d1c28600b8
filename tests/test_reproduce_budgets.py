"""The `cpu` budgets of issue 15: every CIFAR row of the ResNet papers' experiments starts with the same warm-up at
its full length, runs long enough to pass both compressed learning-rate drops, and the stochastic-depth accuracy
claim names the length it needs instead of judging a shortened run."""

import json

import pytest

from resnetlab.reproduce.experiment import get_experiment
from resnetlab.reproduce.experiments.common import close_call, ordered_claim
from resnetlab.reproduce.experiments.stochastic_depth import CONSTANT, STOCHASTIC, _accuracy_claim
from resnetlab.reproduce.results import MANIFEST_FILE, ExperimentResults, RowResult, RunRecord, load_results
from resnetlab.reproduce.runner import resolve_config

IDENTITY_WARMUP_ITERATIONS, IDENTITY_WARMUP_LR = 400, 0.01  # He et al. 2016: 0.01 for the first 400 iterations
ERROR_THRESHOLD = 0.8  # He et al. 2015: ResNet-110 warms up at 0.01 until the training error is below 80%
SD_RECIPE_EPOCHS = 500  # Huang et al. 2016
TABLE6_ITERATIONS = 64_000  # He et al. 2015: 64k iterations for every CIFAR-10 net of Table 6
TABLE1_FAIL_ERROR = 0.20  # He et al. 2016, Table 1: "fail" means a test error above 20%
TABLE1_FAILING = ("constant scaling (0, 1)", "constant scaling (0.5, 1)", "exclusive gating, bias 0",
                  "dropout shortcut (0.5)")
WARM_STARTED = ("degradation", "cifar-depth", "layer-responses", "stochastic-depth", "identity-shortcuts",
                "identity-activations", "preact-depth")


@pytest.mark.parametrize("name", WARM_STARTED)
def test_every_cifar_row_at_the_cpu_budget_starts_with_the_same_full_length_warm_up(name):
    # The warm-up pilot chose a linear ramp from the warm-up lr over He et al. 2016's 400 iterations, for every
    # row alike (the recipes' own starts differ: none, 0.01 held for 400, ResNet-110's error threshold).
    experiment = get_experiment(name)
    plan = experiment.plans["cpu"]
    assert plan.warm_start
    for row in experiment.rows_for("cpu"):
        config = resolve_config(row, "cpu", plan, 0, [])
        warmup = config.train.schedule.warmup
        assert (warmup.kind, warmup.steps, warmup.lr) == ("linear", IDENTITY_WARMUP_ITERATIONS,
                                                          IDENTITY_WARMUP_LR), row.label
        # Both learning-rate drops come after the warm-up and before the end.
        milestones = config.train.schedule.milestones
        assert len(milestones) == 2 and IDENTITY_WARMUP_ITERATIONS < milestones[0] < milestones[1] < plan.iterations


def test_the_paper_budget_keeps_each_recipes_own_start():
    rows = {row.label: row for row in get_experiment("cifar-depth").rows}
    plan = get_experiment("cifar-depth").plans["paper"]
    assert resolve_config(rows["ResNet-56"], "paper", plan, 0, []).train.schedule.warmup.kind == "none"
    warmup = resolve_config(rows["ResNet-110"], "paper", plan, 0, []).train.schedule.warmup
    assert (warmup.kind, warmup.threshold, warmup.min_steps) == ("error_threshold", ERROR_THRESHOLD,
                                                                 IDENTITY_WARMUP_ITERATIONS)


def test_the_batchnorm_study_keeps_its_learning_rates_from_the_first_step():
    # Its claim is how fast each learning rate trains: a warm-up would change what it measures.
    experiment = get_experiment("batchnorm")
    assert not experiment.plans["cpu"].warm_start
    config = resolve_config(experiment.rows[0], "cpu", experiment.plans["cpu"], 0, [])
    assert config.train.schedule.warmup.kind == "none"


def _row(label: str, error: float, epochs: int) -> RowResult:
    run = RunRecord(f"{label}-s0", {"data": {}}, {}, {"test_error_at_best_val": error, "epochs": epochs}, [], [])
    return RowResult(label, label, "recipe.yaml", "resnet110", "500 epochs", 128, {}, [run])


def test_a_claim_with_rows_still_to_train_names_them_and_one_with_only_diverged_runs_says_so():
    trained, untrained = _row("ResNet-20", 0.30, 14), _row("ResNet-56", 0.25, 14)
    untrained.runs[0].summary = None  # listed in a partial report, not trained yet
    claim = ordered_claim("Test error falls with depth.", [trained, untrained], "test_error_at_best_val",
                          increasing=False)
    assert claim.shown is None and claim.evidence == "(not run yet: ResNet-56)"
    untrained.runs[0].diverged = {"iteration": 12}
    claim = ordered_claim("Test error falls with depth.", [trained, untrained], "test_error_at_best_val",
                          increasing=False)
    assert claim.shown is None and claim.evidence == "(no result from ResNet-56: every run diverged)"


@pytest.mark.parametrize(("plan_iterations", "needed"), [(5000, "5,000 iterations"),
                                                          (None, f"{TABLE6_ITERATIONS:,} iterations")])
def test_a_claim_waiting_for_rows_names_the_length_each_needs_at_the_reports_budget(tmp_path, plan_iterations,
                                                                                       needed):
    # A report of one row run at the paper budget (`--rows ResNet-20`) lists the others still to train: the
    # claim says what they need, the budget's length or (paper budget, no length of its own) the recipe's.
    rows = [{"label": label, "group": "ResNet", "recipe": "resnet/table6.yaml", "recipe_model": "resnet56",
             "recipe_length": f"{TABLE6_ITERATIONS} iterations", "recipe_batch_size": 128, "runs": []}
            for label in ("ResNet-32", "ResNet-56")]
    manifest = {"plan": {"iterations": plan_iterations}, "rows": rows}
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(manifest))
    results = load_results(tmp_path)
    claim = ordered_claim("Test error falls with depth.", results.rows, "test_error_at_best_val", increasing=False)
    assert claim.shown is None
    assert claim.evidence == f"(not run yet: ResNet-32, ResNet-56, {needed} each at this budget)"
    one_row = ordered_claim("Test error falls with depth.", results.rows[:1], "test_error_at_best_val",
                            increasing=False)
    assert one_row.evidence == f"(not run yet: ResNet-32, {needed} at this budget)"


@pytest.mark.parametrize("budget", ["cpu", "paper"])
def test_the_stochastic_depth_accuracy_claim_is_judged_at_the_recipes_length_only(budget):
    constant, stochastic = _row(CONSTANT, 0.30, 20), _row(STOCHASTIC, 0.35, 20)
    results = ExperimentResults({"budget": budget, "plan": {}}, [constant, stochastic])
    claim = _accuracy_claim(results, constant, stochastic, seconds_per_iteration=1.0)
    if budget == "paper":
        assert claim.shown is False and "30.00% constant, 35.00% stochastic" in claim.evidence
    else:
        assert claim.shown is None
        assert f"needs the recipe's {SD_RECIPE_EPOCHS} epochs" in claim.evidence and "after 20 epochs" in claim.evidence
        assert "about 49 hours per constant-depth run" in claim.evidence  # 500 x 352 iterations at 1 s each


def test_an_ordering_claim_names_the_rows_a_second_seed_could_reorder():
    rows = [_row("ResNet-20", 0.300, 14), _row("ResNet-32", 0.285, 14), _row("ResNet-44", 0.250, 14)]
    claim = ordered_claim("Test error falls with depth.", rows, "test_error_at_best_val", increasing=False)
    assert claim.shown is True and claim.gap == pytest.approx(0.015)  # 30.0 -> 28.5: below 2 points
    assert claim.close_rows == ("ResNet-20", "ResNet-32")  # 28.5 -> 25.0 is not close: ResNet-44 keeps one seed


def test_a_close_call_is_a_gap_under_2_points_and_the_smallest_gap_is_kept_either_way():
    assert close_call({"a": 0.0199, "b": 0.0201, "c": 0.005}) == (("a", "c"), 0.005)
    assert close_call({"b": 0.0201, "d": 0.15}) == ((), 0.0201)  # nothing close: the verdict stands at one seed
    assert close_call({}) == ((), None)  # every compared row diverged


def test_table1_fail_claim_names_the_rows_within_a_close_call_of_the_20_percent_line(tmp_path):
    from resnetlab.reproduce.experiments.identity2016 import FAIL_ERROR, _analyze_shortcuts

    assert FAIL_ERROR == TABLE1_FAIL_ERROR
    errors = {"original (identity)": 0.1808, "constant scaling (0, 1)": 0.2124, "constant scaling (0.5, 1)": 0.1977,
              "exclusive gating, bias 0": 0.1901, "dropout shortcut (0.5)": 0.4034}
    rows = []
    for row in get_experiment("identity-shortcuts").rows:
        result = _row(row.label, errors.get(row.label, 0.25), 14)
        result.paper = {"fail": row.label in TABLE1_FAILING}
        result.runs[0].config = {}  # no budget notes: the claims alone are tested
        rows.append(result)
    results = ExperimentResults({"budget": "cpu", "plan": {}}, rows)
    lowest, fail = _analyze_shortcuts(results, tmp_path).claims
    # The identity is lowest; the two variants within 2 points of it are owed a second seed, with it.
    assert lowest.shown is True and lowest.close_rows[0] == "original (identity)"
    assert set(lowest.close_rows[1:]) == {"constant scaling (0.5, 1)", "exclusive gating, bias 0"}
    assert lowest.gap == pytest.approx(0.0093)  # exclusive gating, bias 0, the nearest: 19.01 against 18.08%
    # Two rows end under the line, so the claim is not shown; the three within 2 points of it could cross it
    # with a second seed (dropout, 20 points above, could not).
    assert fail.shown is False
    assert set(fail.close_rows) == {"constant scaling (0, 1)", "constant scaling (0.5, 1)", "exclusive gating, bias 0"}
    assert fail.gap == pytest.approx(0.0023)
    assert "constant scaling (0.5, 1) 19.77%" in fail.evidence and "dropout shortcut (0.5) 40.34%" in fail.evidence
