"""He et al. 2015, Deep Residual Learning: the degradation study (Fig. 6), ResNets by depth (Table 6) and the
layer responses (Fig. 7)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from resnetlab.data.datasets import build_data
from resnetlab.reproduce import figures
from resnetlab.reproduce.budgets import AT_THE_END, SMOKE, Plan
from resnetlab.reproduce.experiment import Analysis, Claim, Experiment, Figure, Row
from resnetlab.reproduce.experiments.common import (
    budget_notes,
    curve_series,
    first_finished,
    no_result,
    ordered_among_unstalled,
    ordered_claim,
    unless_stalled,
)
from resnetlab.reproduce.results import METRIC_LABELS
from resnetlab.training.inference import load_trained_model
from resnetlab.training.probes import layer_response_stds, spread_subset

PAPER = "He et al. 2015, Deep Residual Learning for Image Recognition"
# cpu: 5,000 iterations of batch 128 (14 epochs of 45k images), the recipe's milestones compressed to 2,500 and
# 3,750, after He et al. 2016's warm-up (`WARM_START`); a test curve on 2,000 test images every 100 iterations.
# Why 5,000: the longest the eight degradation rows fit in about 2 hours on 2 cores with AMX-BF16 (bf16, compiled:
# 9 ms per image over the eight nets, docs/results/README.md), and long enough to pass both learning-rate drops,
# where the paper's Fig. 6 curves separate. Degradation, cifar-depth and layer-responses share the plan, so they
# share their common runs.
CIFAR_CPU = Plan(iterations=5000, curve_every=100, eval_images=2000, warm_start=True, second_seed_if_close=True)
# paper: He et al. 2015 chose the schedule on a 45k/5k split, then trained on all 50k images and reported the
# test error after the last iteration; so does this budget (the test curve every 1000 iterations shows its path).
CIFAR_PAPER = Plan(iterations=None, seeds=5, curve_every=1000, eval_images=10000, eval_every=AT_THE_END,
                   validation_size=0, metric="final_test_error",
                   note="As in the paper, the paper budget trains on all 50k training images and reports the test "
                        "error after the last iteration (the 45k/5k split chose the paper's schedule).")
DEPTHS = (20, 32, 44, 56)
LAYER_RESPONSE_IMAGES = 2000  # test images the Fig. 7 statistics are taken over
LAYER_RESPONSES_FILE = "layer_responses.json"

PLAIN_ROWS = tuple(Row(f"plain-{d}", f"resnet/fig6_cifar10_plain{d}.yaml", "plain") for d in DEPTHS)
RESNET_ROWS = tuple(Row(f"ResNet-{d}", f"resnet/table6_cifar10_resnet{d}.yaml", "ResNet") for d in (*DEPTHS, 110))


def _analyze_degradation(results, report_dir: Path) -> Analysis:
    analysis = Analysis(notes=budget_notes(results))
    panels = {}
    for group in ("plain", "ResNet"):
        panels[group] = {row.label: (curve_series(row, "train_error"), curve_series(row, "test_error"))
                         for row in results.group(group)}
    figures.plot_error_curves(panels, report_dir / "error_curves.png")
    analysis.figures.append(Figure("error_curves.png", "Training error (dashed, mean over each window of "
                                   "iterations) and test error (bold, on a fixed subset spread evenly over the test "
                                   "set) of plain nets (left) and ResNets (right), as in Fig. 6 of the paper."))
    plain = [results.row(f"plain-{d}") for d in (20, 56)]
    resnet = [results.row(f"ResNet-{d}") for d in (20, 56)]
    # A row that stalled in its first steps measures the stall, not its depth: every claim, plain or residual,
    # leaves such rows out or cannot tell, whichever way its answer would go.
    analysis.claims += [
        unless_stalled(ordered_claim("The deeper plain net has the higher training error (plain-56 above "
                                     "plain-20): degradation.", plain, "final_train_error", increasing=True,
                                     what="final training error"), plain),
        unless_stalled(ordered_claim("The deeper ResNet has the lower training error (ResNet-56 below ResNet-20).",
                                     resnet, "final_train_error", increasing=False, what="final training error"),
                       resnet),
        unless_stalled(ordered_claim("The deeper ResNet has the lower test error (ResNet-56 below ResNet-20).",
                                     resnet, results.metric, increasing=False, what="test error"), resnet),
        ordered_among_unstalled("Plain nets: training error rises with every step in depth (20, 32, 44, 56 "
                                "layers; rows that stalled left out).", [results.row(f"plain-{d}") for d in DEPTHS],
                                "final_train_error", increasing=True, what="final training error"),
        ordered_among_unstalled("ResNets: training error falls with every step in depth (20, 32, 44, 56 layers; "
                                "rows that stalled left out).", [results.row(f"ResNet-{d}") for d in DEPTHS],
                                "final_train_error", increasing=False, what="final training error"),
    ]
    return analysis


def _analyze_cifar_depth(results, report_dir: Path) -> Analysis:
    analysis = Analysis(notes=budget_notes(results))
    rows = results.rows
    depths = [int(row.label.split("-")[1]) for row in rows]
    ours = [None if row.stats(results.metric).median is None else 100 * row.stats(
        results.metric).median for row in rows]
    figures.ours_vs_paper(depths, ours, [row.paper_error for row in rows], report_dir / "error_vs_depth.png",
                          "depth (layers)", "test error (%)", "CIFAR-10 test error by depth (Table 6)")
    analysis.figures.append(Figure("error_vs_depth.png", f"{METRIC_LABELS[results.metric].capitalize()} against "
                                   "depth, ours (median over seeds) and the paper's Table 6."))
    curves = {row.label: (curve_series(row, "train_error"), curve_series(row, "test_error")) for row in rows}
    figures.plot_error_curves({"CIFAR-10 ResNets": curves}, report_dir / "error_curves.png")
    analysis.figures.append(Figure("error_curves.png", "Training error (dashed, mean over each window of iterations) "
                                   "and test error (bold) over training, first seed of each row, as in Fig. 6."))
    analysis.claims.append(ordered_claim("Test error falls with depth from ResNet-20 to ResNet-110.",
                                         [r for r in rows if r.label != "ResNet-1202"], results.metric,
                                         increasing=False, what="test error"))
    return analysis


def measure_layer_responses(run_dir: Path) -> None:
    """Write ``layer_responses.json``: Fig. 7's std per 3x3 layer of the trained net, on test images spread over
    the split."""
    if (run_dir / LAYER_RESPONSES_FILE).is_file():
        return
    trained = load_trained_model(run_dir)
    config = trained.config
    data = build_data(config.data, config.train.seed, config.train.batch_size, "cpu", trained.normalizer)
    subset = spread_subset(data.eval_batches("test"), data.split_sizes["test"], LAYER_RESPONSE_IMAGES)
    layers = layer_response_stds(trained.model, subset)
    record = {"images": min(LAYER_RESPONSE_IMAGES, data.split_sizes["test"]), "split": "test", "layers": layers}
    (run_dir / LAYER_RESPONSES_FILE).write_text(json.dumps(record, indent=2) + "\n")


def _mean_response(row) -> float | None:
    run = first_finished(row)
    layers = run.extras.get("layer_responses", {}).get("layers") if run else None
    return sum(layer["std"] for layer in layers) / len(layers) if layers else None


def _analyze_layer_responses(results, report_dir: Path) -> Analysis:
    analysis = Analysis(notes=budget_notes(results))
    by_index, by_size, means = {}, {}, {}
    for row in results.rows:
        run = first_finished(row)
        layers = run.extras.get("layer_responses", {}).get("layers", []) if run else []
        stds = [layer["std"] for layer in layers]
        by_index[row.label] = (list(range(1, len(stds) + 1)), stds)
        by_size[row.label] = (list(range(1, len(stds) + 1)), sorted(stds, reverse=True))
        means[row.label] = _mean_response(row)
    figures.line_panels({"layer index (original)": by_index, "layer index (sorted by magnitude)": by_size},
                        report_dir / "layer_responses.png", "layer index", "std")
    analysis.figures.append(Figure("layer_responses.png", "Standard deviation of each 3x3 layer's response "
                                   "(after BN, before the addition and ReLU) on the test images, in layer order "
                                   "(top) and sorted (bottom), as in Fig. 7 of the paper."))
    analysis.columns["mean response std"] = {label: "-" if m is None else f"{m:.3f}" for label, m in means.items()}

    def smaller(a: str, b: str) -> Claim:
        statement = f"{a} has smaller responses than {b} (mean std over its 3x3 layers)."
        if means.get(a) is None or means.get(b) is None:
            missing = no_result([results.row(a), results.row(b)], "test_error_at_best_val")
            return Claim(statement, None, missing or "(a row has no measured responses)")
        claim = Claim(statement, means[a] < means[b], f"Ours: {a} {means[a]:.3f}, {b} {means[b]:.3f}.")
        return unless_stalled(claim, [results.row(a), results.row(b)])  # a stalled net's responses are untrained

    analysis.claims += [smaller("ResNet-20", "plain-20"), smaller("ResNet-56", "plain-56"),
                        smaller("ResNet-56", "ResNet-20"), smaller("ResNet-110", "ResNet-56")]
    return analysis


EXPERIMENTS: list[Experiment] = []  # registered by the package, in the papers' order

EXPERIMENTS.append(Experiment(
    name="degradation", title="Degradation: plain nets against ResNets by depth (Fig. 6)", paper=PAPER,
    summary="Deeper plain nets have higher training error than shallower ones (degradation), while deeper "
            "ResNets have lower training and test error.",
    rows=PLAIN_ROWS + RESNET_ROWS[:4],
    plans={"smoke": SMOKE, "cpu": CIFAR_CPU, "paper": CIFAR_PAPER},
    analyze=_analyze_degradation))

EXPERIMENTS.append(Experiment(
    name="cifar-depth", title="CIFAR-10 ResNets by depth (Table 6)", paper=PAPER,
    summary="CIFAR-10 test error falls from ResNet-20 (8.75%) to ResNet-110 (6.43% best, 6.61 mean); "
            "ResNet-1202 overfits (7.93%).",
    rows=RESNET_ROWS + (Row("ResNet-1202", "resnet/table6_cifar10_resnet1202.yaml", "ResNet"),),
    # ResNet-1202 only at the paper budget: at 600 iterations on 2 cores it alone would take hours.
    plans={"smoke": SMOKE, "cpu": replace(CIFAR_CPU, rows=tuple(r.label for r in RESNET_ROWS)),
           "paper": CIFAR_PAPER},
    analyze=_analyze_cifar_depth))

EXPERIMENTS.append(Experiment(
    name="layer-responses", title="Layer responses of plain nets and ResNets (Fig. 7)", paper=PAPER,
    summary="The std of each 3x3 layer's response (after BN, before the nonlinearity and the addition) is "
            "smaller in ResNets than in plain nets, and smaller in deeper ResNets: residual functions are closer "
            "to zero than non-residual ones.",
    rows=(PLAIN_ROWS[0], PLAIN_ROWS[3], RESNET_ROWS[0], RESNET_ROWS[3], RESNET_ROWS[4]),
    plans={"smoke": SMOKE, "cpu": CIFAR_CPU, "paper": CIFAR_PAPER},
    analyze=_analyze_layer_responses, measure=measure_layer_responses, measured_files=(LAYER_RESPONSES_FILE,)))
