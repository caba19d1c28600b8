"""The argument parser of the ``resnetlab`` command: a declarative table of the subcommands and their options."""

from __future__ import annotations

import argparse

from resnetlab.cli.model_commands import cmd_bench, cmd_info, cmd_models
from resnetlab.cli.reproduce_commands import cmd_report, cmd_reproduce
from resnetlab.cli.run_commands import cmd_eval, cmd_export, cmd_predict, cmd_recipes, cmd_train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resnetlab", description="Deep residual networks of four papers, "
                                     "built exactly, trained and measured.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    train = sub.add_parser("train", help="train a model (no recipe: the quick start on synthetic data)",
                           description="Train from a recipe (a name from `resnetlab recipes` or a YAML file) with "
                           "key=value overrides, e.g. `resnetlab train table6_cifar10_resnet110 train.seed=1`.")
    train.add_argument("items", nargs="*", metavar="[RECIPE] [key=value]",
                       help="a recipe name or YAML file, then overrides")
    train.add_argument("--resume", metavar="RUN", help="continue the run in this folder (or from this checkpoint)")
    train.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    train.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bar with ETA (default: only on a terminal)")
    train.set_defaults(handler=cmd_train)
    recipes = sub.add_parser("recipes", help="list the paper recipes shipped with resnetlab",
                             description="One recipe per paper table row: its name (for `resnetlab train NAME`), "
                             "model, data set and the error the paper reports.")
    recipes.add_argument("pattern", nargs="?", help="shell pattern on the name or its stem, e.g. 'table6*'")
    recipes.set_defaults(handler=cmd_recipes)
    evaluate = sub.add_parser("eval", help="evaluate a run or an export class by class: table, confusion matrix, "
                              "misclassified images")
    evaluate.add_argument("run", metavar="RUN|CHECKPOINT|EXPORT", help="a run folder, a checkpoint, or a file written "
                          "by `resnetlab export` (with its .json card beside it)")
    evaluate.add_argument("--data", metavar="ROOT", default=None, help="another image folder with the same classes "
                          "(default: the data the model was trained on)")
    evaluate.add_argument("--split", choices=("val", "test"), default="test")
    evaluate.add_argument("--out", default=None, help="folder for the files (default: RUN/eval, or runs/eval/NAME for "
                          "an export)")
    evaluate.add_argument("--device", default="cpu")
    evaluate.set_defaults(handler=cmd_eval)
    predict = sub.add_parser("predict", help="top-5 classes of image files with a trained or exported model")
    predict.add_argument("checkpoint", metavar="MODEL", help="a run folder, a checkpoint, or a file written by "
                         "`resnetlab export` (.safetensors, .onnx, .torchscript.pt, with its .json card beside it)")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--top", type=int, default=5, help="how many classes to list (default: 5)")
    predict.add_argument("--device", default="cpu")
    predict.set_defaults(handler=cmd_predict)
    export = sub.add_parser("export", help="write a trained model as ONNX, TorchScript or safetensors, checked "
                            "against PyTorch", description="Export a checkpoint with a model card (JSON) beside it. "
                            "ONNX and TorchScript take RGB pixels in [0, 1] (normalization inside the graph) with a "
                            "dynamic batch axis; each export is run back and compared with PyTorch.")
    export.add_argument("checkpoint", metavar="CHECKPOINT|RUN")
    export.add_argument("--format", choices=("onnx", "torchscript", "safetensors"), required=True)
    export.add_argument("--out", default=None, help="output file (default: RUN/export/<name><suffix>)")
    export.add_argument("--fuse-bn", action="store_true", help="fold BN into the convolutions first (inference only)")
    export.set_defaults(handler=cmd_export)
    models = sub.add_parser("models", help="list every model with depth, parameters and multiply-adds")
    models.add_argument("pattern", nargs="?", help="shell pattern on the name, e.g. 'preact*'")
    models.set_defaults(handler=cmd_models)
    info = sub.add_parser("info", help="print a model's stage table")
    info.add_argument("name", help="a model name from `resnetlab models`")
    info.add_argument("--input-size", type=int, default=None, help="image side in pixels (default: the model's)")
    info.set_defaults(handler=cmd_info)
    bench = sub.add_parser("bench", help="training or inference speed of a model against the plain eager reference",
                           description="Measure images/s, GFLOP/s, the fraction of the matmul peak and peak memory, "
                           "side by side with the plain eager NCHW float32 reference, in interleaved rounds.")
    bench.add_argument("model", help="a model name from `resnetlab models`")
    bench.add_argument("--batch", type=int, default=128, help="images per step (default: 128)")
    mode = bench.add_mutually_exclusive_group()
    mode.add_argument("--train", dest="mode", action="store_const", const="train", help="training steps (default)")
    mode.add_argument("--infer", dest="mode", action="store_const", const="infer",
                      help="inference: eager vs BN folded into the convolutions")
    bench.set_defaults(mode="train")
    bench.add_argument("--compile", action="store_true", help="torch.compile resnetlab's side")
    bench.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=None,
                       help="resnetlab's side: autocast of the training step as train.precision, or with --infer the "
                       "dtype of the folded net (default: auto, bf16 where the CPU has AMX-BF16 or AVX512-BF16); the "
                       "reference stays float32 eager")
    bench.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                       help="NHWC memory on resnetlab's side (default: on, as in training)")
    bench.add_argument("--image-size", type=int, default=None, help="image side in px (default: the model's)")
    bench.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default: 3)")
    bench.add_argument("--steps", type=int, default=5, help="timed steps (or calls) per round (default: 5)")
    bench.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    bench.set_defaults(handler=cmd_bench)
    reproduce = sub.add_parser("reproduce", help="run a paper's experiment and write its report beside the paper's "
                               "numbers", description="Train every row of an experiment (resuming finished and "
                               "interrupted runs), then write a Markdown/HTML report with figures.")
    reproduce.add_argument("experiment", nargs="?", help="an experiment from --list, or 'all'")
    reproduce.add_argument("--list", action="store_true", help="list the experiments and their budgets")
    reproduce.add_argument("--budget", choices=("smoke", "cpu", "paper"), default="smoke",
                           help="smoke: seconds, synthetic data; cpu: about 2 hours per experiment with AMX-BF16; "
                                "paper: the full recipes")
    reproduce.add_argument("--rows", nargs="+", metavar="LABEL", default=None,
                           help="train only these rows (labels as in the report, e.g. ResNet-20); the report "
                                "still covers every row, the others from runs finished before")
    reproduce.add_argument("--seeds", type=int, default=None, help="runs per row (default: the budget's)")
    reproduce.add_argument("--data", metavar="PATH", default=None, help="a CIFAR-10 folder, an image folder "
                           "with train/ and test/ (e.g. the CIFAR-10 JPEG copy), or 'synthetic' (default: "
                           "synthetic for smoke, the recipes' data/ otherwise)")
    reproduce.add_argument("--out", default="runs/reproduce", help="where runs and reports go (default: %(default)s)")
    reproduce.add_argument("--reuse", action="append", metavar="DIR", default=[],
                           help="a report folder, or a folder of them such as docs/results, whose finished runs "
                                "count as done: a run of the same name (recipe, budget, seed, resolved config) is "
                                "taken from its records instead of trained again, so a reproduction goes on "
                                "across machines from what was committed (repeatable)")
    reproduce.add_argument("--no-train", action="store_true",
                           help="train nothing: write the report from the runs finished here or in --reuse folders, "
                                "counting the others as still to train")
    reproduce.add_argument("--no-twins", action="store_true",
                           help="train a run whose twin (a finished run of another experiment's recipe whose "
                                "config differs only in its note of the paper) is found, instead of taking the "
                                "twin's records, e.g. to check that training repeats")
    reproduce.add_argument("--device", default="cpu")
    reproduce.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                           help="train the runs trained here in this arithmetic instead of each recipe's "
                                "train.precision (auto: bf16 where the CPU has bf16 units), e.g. to keep an "
                                "experiment begun on another machine in one precision; run names stay the same, "
                                "runs finished before keep theirs, and each report names every run's")
    reproduce.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    reproduce.set_defaults(handler=cmd_reproduce)
    report = sub.add_parser("report", help="rebuild a reproduction's report from its run records")
    report.add_argument("runs", nargs="*", metavar="REPORT_DIR", help="folders written by `resnetlab reproduce`")
    report.add_argument("--out", default=None, help="copy the records there and build the report in the copy")
    report.add_argument("--index", metavar="DIR", default=None,
                        help="rebuild every report folder in DIR, then write the table of all their claims into "
                             "DIR/README.md (e.g. docs/results)")
    report.set_defaults(handler=cmd_report)
    return parser
