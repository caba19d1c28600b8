"""`resnetlab train`, `eval`, `predict` from the command line, and one clear line for every bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from resnetlab.cli import main

TINY = ["data.synthetic_train_size=224", "data.synthetic_test_size=64", "data.validation_size=32",
        "train.batch_size=32", "train.epochs=1"]


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "resnetlab", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env={**os.environ, "RESNETLAB_CACHE": str(cwd / "cache")})


def assert_one_clear_line(result, fragment, code=2):
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("resnetlab: error:"), result.stderr
    assert fragment in lines[0] and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    result = run_cli("train", *TINY, f"run.out_dir={folder}", "run.name=tiny", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert "done: test error" in result.stdout
    return folder / "tiny"


def test_train_eval_and_predict(trained_run, tmp_path, capsys):
    assert main(["eval", str(trained_run)]) == 0
    assert "64 images: top-1 error" in capsys.readouterr().out
    assert main(["eval", str(trained_run), "--split", "val"]) == 0
    assert "32 images: top-1 error" in capsys.readouterr().out
    written = json.loads((trained_run / "eval" / "test_summary.json").read_text())
    assert written["top1_error"] == json.loads((trained_run / "summary.json").read_text())["final_test_error"]
    image = tmp_path / "stripes.png"
    from resnetlab.data.synthetic import make_synthetic

    data = make_synthetic(0, 1, seed=5)
    Image.fromarray(data.test_images[0]).resize((64, 48)).save(image)  # another size: resized and cropped
    assert main(["predict", str(trained_run / "last.pt"), str(image)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(image) and len(out) == 6
    probabilities = [float(line.split()[-1].rstrip("%")) for line in out[1:]]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 100.01


def test_resume_of_a_finished_run_only_reports(trained_run):
    files = ("last.pt", "metrics.jsonl", "summary.json")
    before = {name: (trained_run / name).read_bytes() for name in files}
    result = run_cli("train", "--resume", str(trained_run), cwd=trained_run.parent)
    assert result.returncode == 0 and "done" in result.stdout
    assert not [line for line in result.stdout.splitlines() if line.startswith("epoch")]  # no step was trained
    assert {name: (trained_run / name).read_bytes() for name in files if name != "summary.json"} == \
        {name: data for name, data in before.items() if name != "summary.json"}
    assert json.loads((trained_run / "summary.json").read_text())["final_test_error"] == \
        json.loads(before["summary.json"])["final_test_error"]


@pytest.mark.parametrize("args, fragment", [
    (["train", "missing.yaml"], "config file missing.yaml not found"),
    (["train", "train.lr=-1"], "train.lr must be positive"),
    (["train", "train.lrr=0.1"], "unknown key train.lrr"),
    (["train", "model.name=resnet111"], "did you mean: resnet110"),
    (["train", "data.name=cifar10", "data.root=nowhere"], "set data.download=true"),
    (["train", "data.name=folder", "data.root=nowhere"], "nowhere"),
    (["train", "--resume", "no_such_run"], "no_such_run"),
    (["eval", "no_such_run"], "not found"),
    (["predict", "no_such.pt", "x.png"], "not found"),
])
def test_bad_input_gives_one_line_and_a_non_zero_exit(args, fragment, tmp_path):
    assert_one_clear_line(run_cli(*args, cwd=tmp_path), fragment)


def test_bad_images_and_checkpoints(trained_run, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert_one_clear_line(run_cli("predict", str(trained_run), str(broken), cwd=tmp_path), "broken.png")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((trained_run / "last.pt").read_bytes()[:1000])
    assert_one_clear_line(run_cli("eval", str(truncated), cwd=tmp_path), "truncated.pt")


def test_a_corrupt_image_in_a_folder_is_named_or_skipped(tmp_path):
    root = tmp_path / "shapes"
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 4)):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    (root / "train" / "a" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    common = ["data.name=folder", f"data.root={root}", "data.validation_size=4", "train.batch_size=8",
              "train.iterations=2", f"run.out_dir={tmp_path}"]
    assert_one_clear_line(run_cli("train", *common, cwd=tmp_path), "bad.png")
    result = run_cli("train", *common, "data.skip_bad=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "skipped 1 unreadable images" in result.stdout


def test_interrupt_writes_a_checkpoint_and_says_how_to_resume(tmp_path):
    # Eager: 200 epochs of 6 steps would compile (runs of >= 1,000 iterations do), seconds that test nothing here.
    process = subprocess.Popen(
        [sys.executable, "-m", "resnetlab", "train", *TINY[:-1], "train.epochs=200", "train.compile=false",
         f"run.out_dir={tmp_path}", "run.name=long"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    import time

    deadline = time.monotonic() + 120
    while not (tmp_path / "long" / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.2)  # wait until the first epoch's checkpoint exists: training is under way
    process.send_signal(__import__("signal").SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "--resume" in err and str(tmp_path / "long") in err
    from resnetlab.training.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "long" / "last.pt")["train_state"]["iteration"] > 0
