"""He et al. 2016, Identity Mappings in Deep Residual Networks: the shortcut variants (Table 1), the
activation placements (Table 2) and original against pre-activation units by depth (Table 3)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from resnetlab.reproduce import figures
from resnetlab.reproduce.budgets import SMOKE, Plan
from resnetlab.reproduce.experiment import Analysis, Claim, Experiment, Figure, Row
from resnetlab.reproduce.experiments.common import budget_notes, close_call, median_of, not_run_note, ordered_claim

PAPER = "He et al. 2016, Identity Mappings in Deep Residual Networks"
FAIL_ERROR = 0.20  # Table 1 marks a variant "fail" when its test error stays above 20%
# cpu: ResNet-110's variants run on smaller nets of the same units and options, 5,000 iterations each (milestones
# compressed to 2,500 and 3,750) after He et al. 2016's warm-up: the eleven shortcut variants on ResNet-20 (eager:
# the gates and dropout are left uncompiled; about 1.5 h with AMX-BF16), the five activation placements on
# ResNet-56 (compiled; about 1.7 h). The 164-layer bottleneck rows have no cheap stand-in: paper budget only.
TO_RESNET20 = (("resnet110", ("model.name=resnet20",)),
               ("preact_resnet110", ("model.name=resnet20", "model.placement=full_preact")))
TO_RESNET56 = (("resnet110", ("model.name=resnet56",)),
               ("preact_resnet110", ("model.name=resnet56", "model.placement=full_preact")))
SHORTCUTS_CPU = Plan(iterations=5000, curve_every=100, eval_images=2000, compile=False, substitute=TO_RESNET20,
                     warm_start=True, second_seed_if_close=True,
                     note="ResNet-110's variants run on ResNet-20 at this budget (the same units and options).")
ACTIVATIONS_CPU = Plan(iterations=5000, curve_every=100, eval_images=2000, substitute=TO_RESNET56, warm_start=True,
                       second_seed_if_close=True,
                       note="ResNet-110's rows run on ResNet-56 at this budget (the same units); the ResNet-164 "
                            "rows only at the paper budget.")
PAPER_PLAN = Plan(iterations=None, seeds=5, curve_every=1000, eval_images=10000)

SHORTCUT_ROWS = tuple(Row(label, f"identity_mappings/table1_{stem}.yaml", "ResNet-110") for label, stem in (
    ("original (identity)", "original"),
    ("constant scaling (0, 1)", "constant_scaling_0_1"),
    ("constant scaling (0.5, 1)", "constant_scaling_05_1"),
    ("constant scaling (0.5, 0.5)", "constant_scaling_05_05"),
    ("exclusive gating, bias 0", "exclusive_gating_0"),
    ("exclusive gating, bias -6", "exclusive_gating_m6"),
    ("exclusive gating, bias -7", "exclusive_gating_m7"),
    ("shortcut-only gating, bias 0", "shortcut_only_gating_0"),
    ("shortcut-only gating, bias -6", "shortcut_only_gating_m6"),
    ("1x1 conv shortcut", "conv1x1"),
    ("dropout shortcut (0.5)", "dropout_05"),
))
PLACEMENTS = (("(a) original", "original"), ("(b) BN after addition", "bn_after_add"),
              ("(c) ReLU before addition", "relu_before_add"), ("(d) ReLU-only pre-activation", "relu_only_preact"),
              ("(e) full pre-activation", "full_preact"))
ACTIVATION_ROWS = tuple(Row(f"ResNet-{depth} {label}", f"identity_mappings/table2_resnet{depth}_{stem}.yaml",
                            f"ResNet-{depth}") for depth in (110, 164) for label, stem in PLACEMENTS)
PREACT_ROWS = tuple(Row(f"ResNet-{depth} {kind}", f"identity_mappings/table3_cifar10_resnet{depth}_{stem}.yaml",
                        f"ResNet-{depth}") for depth in (110, 164, 1001)
                    for kind, stem in (("original", "original"), ("pre-activation", "preact")))


def _error_figure(results, report_dir: Path, file: str, title: str) -> Figure:
    rows = results.rows
    ours = [None if median_of(row, results.metric) is None else 100 * median_of(row, results.metric)
            for row in rows]
    figures.ours_vs_paper(list(range(len(rows))), ours, [row.paper_error for row in rows], report_dir / file,
                          "row", "test error (%)", title, tick_labels=[row.label for row in rows])
    return Figure(file, f"{title}: ours (median over seeds) and the paper's, row by row.")


def _lowest_claim(statement: str, best, others, metric: str) -> Claim:
    best_value = median_of(best, metric)
    values = {row.label: median_of(row, metric) for row in others}
    not_run = [row for row in (best, *others) if not row.runs]
    if not_run:
        return Claim(statement, None, not_run_note(not_run))
    if best_value is None:
        return Claim(statement, None, "(the row has no finished run)")
    finished = {label: v for label, v in values.items() if v is not None}
    failed = sorted(label for label, v in values.items() if v is None)
    shown = all(best_value < v for v in finished.values())
    evidence = (f"Ours: {best.label} {100 * best_value:.2f}%; "
                + ", ".join(f"{label} {100 * v:.2f}%" for label, v in finished.items())
                + (f"; diverged: {', '.join(failed)}" if failed else "") + ".")
    close, smallest = close_call({label: abs(v - best_value) for label, v in finished.items()})
    return Claim(statement, shown, evidence, (best.label, *close) if close else (), smallest)


def _analyze_shortcuts(results, report_dir: Path) -> Analysis:
    analysis = Analysis(notes=budget_notes(results))
    analysis.figures.append(_error_figure(results, report_dir, "errors.png", "Shortcut variants (Table 1)"))
    original = results.rows[0]
    analysis.claims.append(_lowest_claim("The identity shortcut has the lowest error of all shortcut variants.",
                                         original, results.rows[1:], results.metric))
    failing = [row for row in results.rows if row.paper.get("fail")]
    statement = (f"The variants the paper marks fail end above {100 * FAIL_ERROR:.0f}% test error (or diverge) "
                 "here too.")
    values = {row.label: median_of(row, results.metric) for row in failing}
    if any(not row.runs for row in failing):
        analysis.claims.append(Claim(statement, None, not_run_note([row for row in failing if not row.runs])))
    elif failing:
        shown = all(v is None or v > FAIL_ERROR for v in values.values())
        close, smallest = close_call({label: abs(v - FAIL_ERROR) for label, v in values.items() if v is not None})
        analysis.claims.append(Claim(statement, shown, "Ours: " + ", ".join(
            f"{label} {'diverged' if v is None else f'{100 * v:.2f}%'}" for label, v in values.items()) + ".",
            close, smallest))
    return analysis


def _analyze_activations(results, report_dir: Path) -> Analysis:
    analysis = Analysis(notes=budget_notes(results))
    analysis.figures.append(_error_figure(results, report_dir, "errors.png", "Activation placements (Table 2)"))
    for depth in (110, 164):
        rows = results.group(f"ResNet-{depth}")
        if not rows:
            continue
        full = rows[-1]
        analysis.claims.append(_lowest_claim(f"At depth {depth} full pre-activation (e) has the lowest error.",
                                             full, rows[:-1], results.metric))
        analysis.claims.append(ordered_claim(f"At depth {depth} BN after addition (b) is worse than the original (a).",
                                             [rows[0], rows[1]], results.metric, increasing=True,
                                             what="test error"))
    return analysis


def _analyze_preact(results, report_dir: Path) -> Analysis:
    analysis = Analysis(notes=budget_notes(results))
    analysis.figures.append(_error_figure(results, report_dir, "errors.png", "Original and pre-activation (Table 3)"))
    for depth in (110, 164, 1001):
        pair = results.group(f"ResNet-{depth}")
        if len(pair) == 2:
            analysis.claims.append(ordered_claim(f"At depth {depth} pre-activation has the lower test error.",
                                                 pair, results.metric, increasing=False, what="test error"))
    return analysis


EXPERIMENTS: list[Experiment] = []  # registered by the package, in the papers' order

EXPERIMENTS.append(Experiment(
    name="identity-shortcuts", title="Shortcut variants on ResNet-110 (Identity Mappings, Table 1)", paper=PAPER,
    summary="Scaling, gating, 1x1 convolutions or dropout on the shortcut all do worse than the plain identity "
            "(6.61%); several fail to train (above 20% error).",
    rows=SHORTCUT_ROWS, plans={"smoke": SMOKE, "cpu": SHORTCUTS_CPU, "paper": PAPER_PLAN},
    analyze=_analyze_shortcuts))

EXPERIMENTS.append(Experiment(
    name="identity-activations", title="Activation placements (Identity Mappings, Table 2)", paper=PAPER,
    summary="Moving BN and ReLU before the weights (full pre-activation) gives the lowest error at both depths "
            "(6.37% on ResNet-110, 5.46% on ResNet-164); BN after the addition is the worst.",
    rows=ACTIVATION_ROWS,
    plans={"smoke": SMOKE, "cpu": replace(ACTIVATIONS_CPU, rows=tuple(r.label for r in ACTIVATION_ROWS[:5])),
           "paper": PAPER_PLAN},
    analyze=_analyze_activations))

EXPERIMENTS.append(Experiment(
    name="preact-depth", title="Original against pre-activation ResNets by depth (Identity Mappings, Table 3)",
    paper=PAPER,
    summary="Pre-activation units lower the CIFAR-10 error at every depth, most at 1001 layers "
            "(7.61% to 4.92%), where the original units make optimisation harder.",
    rows=PREACT_ROWS,
    plans={"smoke": SMOKE,
           "cpu": Plan(iterations=1000, curve_every=50, eval_images=2000, compile=False, warm_start=True,
                       rows=tuple(r.label for r in PREACT_ROWS[:4]),
                       note="ResNet-110 and ResNet-164 pairs only: a 1001-layer net needs hours per run here."),
           "paper": PAPER_PLAN},
    analyze=_analyze_preact))
