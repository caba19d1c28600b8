"""`resnetlab eval`: the counts against hand-made predictions, and the files written for a run and an export of a
small image-folder run (the table, the confusion-matrix PNG, the CSV naming the misclassified files)."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from resnetlab.cli import main
from resnetlab.config import load_config
from resnetlab.deploy.export import export_checkpoint
from resnetlab.evaluation.run import evaluate_source
from resnetlab.evaluation.scores import Predictions, class_scores, confusion_matrix, summarize, write_misclassified
from resnetlab.training.session import train

CLASSES = ["cat", "dog", "fox"]
# Hand-made: 6 images. True cat,cat,cat,dog,dog,fox; predicted cat,dog,cat,dog,cat,dog.
LABELS = np.array([0, 0, 0, 1, 1, 2])
RANKED = np.array([[0, 1, 2], [1, 0, 2], [0, 2, 1], [1, 2, 0], [0, 1, 2], [1, 2, 0]])
PROBABILITIES = np.array([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.6, 0.3, 0.1], [0.8, 0.1, 0.1], [0.5, 0.3, 0.2],
                          [0.6, 0.3, 0.1]])
EXPECTED_CONFUSION = [[2, 1, 0], [1, 1, 0], [0, 1, 0]]  # rows: true cat, dog, fox; columns: predicted


def hand_made() -> Predictions:
    return Predictions(LABELS, RANKED, PROBABILITIES, [f"img{i}.png" for i in range(6)], CLASSES)


def test_counts_of_hand_made_predictions():
    confusion = confusion_matrix(LABELS, RANKED[:, 0], 3)
    assert confusion.tolist() == EXPECTED_CONFUSION
    cat, dog, fox = class_scores(confusion, CLASSES)
    assert (cat["images"], cat["predicted"], cat["correct"]) == (3, 3, 2)
    assert cat["precision"] == pytest.approx(2 / 3) and cat["recall"] == pytest.approx(2 / 3)
    assert dog["precision"] == pytest.approx(1 / 3) and dog["recall"] == pytest.approx(1 / 2)
    assert fox["precision"] is None and fox["recall"] == 0.0  # never predicted; never right
    summary = summarize(hand_made())
    assert summary["top1_error"] == pytest.approx(3 / 6) and "top5_error" not in summary  # 3 classes: no top-5


def test_top5_error_above_ten_classes():
    classes = [f"c{i}" for i in range(12)]
    labels = np.array([0, 1, 2, 3])
    ranked = np.array([[0, 5, 6, 7, 8], [5, 1, 6, 7, 8], [5, 6, 7, 8, 9], [4, 5, 6, 7, 3]])
    summary = summarize(Predictions(labels, ranked, np.full(ranked.shape, 0.2), list("abcd"), classes))
    assert summary["top1_error"] == pytest.approx(3 / 4) and summary["top5_error"] == pytest.approx(1 / 4)


def test_the_csv_lists_each_misclassified_image_with_three_guesses(tmp_path):
    rows = write_misclassified(hand_made(), tmp_path / "wrong.csv")
    with open(tmp_path / "wrong.csv") as handle:
        table = list(csv.reader(handle))
    assert rows == 3 and len(table) == 4
    assert table[0] == ["image", "class", "guess_1", "probability_1", "guess_2", "probability_2", "guess_3",
                        "probability_3"]
    assert table[1] == ["img1.png", "cat", "dog", "0.5000", "cat", "0.4000", "fox", "0.1000"]
    assert [row[0] for row in table[1:]] == ["img1.png", "img4.png", "img5.png"]


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """ResNet-20 trained for 2 epochs on a generated folder: 3 classes of 8x8 PNGs told apart by colour."""
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    for split, count in (("train", 24), ("test", 10)):
        for label, name in enumerate(["blue", "green", "red"]):
            for index in range(count):
                pixels = rng.integers(0, 80, (8, 8, 3), dtype=np.uint8)
                pixels[..., 2 - label] += 150  # red, green or blue dominates
                (root / "data" / split / name).mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(root / "data" / split / name / f"{index:02d}.png")
    config = load_config(None, [f"data.root={root / 'data'}", "data.name=folder", "data.validation_size=0",
                                "train.batch_size=16", "train.epochs=2", "train.schedule.unit=epochs",
                                "train.schedule.milestones=[]", "train.precision=fp32", f"run.out_dir={root}",
                                "run.name=run", "train.compile=false"])
    summary = train(config, log=lambda *a, **k: None)
    return root, summary


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "cache"))


def test_eval_of_a_run_writes_its_four_files_and_repeats_the_runs_test_error(folder_run, capsys):
    root, summary = folder_run
    assert main(["eval", str(root / "run")]) == 0
    printed = capsys.readouterr().out
    assert "| blue" in printed and "30 images: top-1 error" in printed
    out = root / "run" / "eval"
    written = json.loads((out / "test_summary.json").read_text())
    assert written["top1_error"] == pytest.approx(summary["final_test_error"], abs=1e-12)
    assert sum(row["images"] for row in written["per_class"]) == 30
    # the run's own summary holds the same per-class accuracies (recall) from its final test evaluation
    assert summary["final_test_per_class_accuracy"] == pytest.approx(
        {row["class"]: row["recall"] for row in written["per_class"]})
    with Image.open(out / "test_confusion.png") as image:
        assert image.format == "PNG" and image.size[0] > 300
    with open(out / "test_misclassified.csv") as handle:
        wrong = list(csv.DictReader(handle))
    confusion = np.array(written["confusion"])
    assert 0 < len(wrong) == confusion.sum() - np.trace(confusion) == written["misclassified"]
    for row in wrong:  # real files of the test split, named with their own class
        assert (root / "data" / "test" / row["class"]).samefile(root / "data" / "test" / row["image"].split("/")[-2])
        assert row["guess_1"] != row["class"]
    assert "| blue" in (out / "test_per_class.md").read_text()


def test_eval_of_a_safetensors_export_on_another_folder(folder_run, tmp_path):
    root, summary = folder_run
    export = export_checkpoint(root / "run", "safetensors", tmp_path / "net.safetensors")
    result = evaluate_source(export.path, data_root=root / "data", out=tmp_path / "out")
    assert result.summary["top1_error"] == pytest.approx(summary["final_test_error"], abs=1e-12)
    assert result.files["misclassified"].name == "data-test_misclassified.csv"


def test_a_folder_with_other_classes_is_refused_in_one_line(folder_run, tmp_path, capsys):
    root, _ = folder_run
    for split in ("train", "test"):
        for name in ("cat", "dog", "fox"):
            (tmp_path / "other" / split / name).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / "other" / split / name / "0.png")
    assert main(["eval", str(root / "run"), "--data", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "differ from the model's (blue, green, red)" in err[0]
