"""The command line: `resnetlab models`, `resnetlab info`, and one clear line for bad input."""

import json
import os
import subprocess
import sys

import pytest

import resnetlab
from resnetlab.cli import main


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def run_cli(*args, cache):
    env = {**os.environ, "RESNETLAB_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "resnetlab", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_models_lists_every_model_with_depth_params_and_multiply_adds(private_cache):
    result = run_cli("models", cache=private_cache)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:-1]}
    assert list(rows) == resnetlab.list_models()
    assert rows["resnet110"][1:4] == ["110", "1.73M", "0.253G"]
    assert rows["resnet50"][1:4] == ["50", "25.56M", "4.089G"]
    cached = json.loads((private_cache / "model_stats.json").read_text())["models"]
    assert cached["resnet1202"]["parameters"] == 19_421_274
    again = run_cli("models", "resnet1*", cache=private_cache)  # served from the cache now
    assert again.returncode == 0 and "counting" not in again.stderr
    assert [line.split()[0] for line in again.stdout.splitlines()[1:-1]] == resnetlab.list_models("resnet1*")


def test_info_prints_the_stage_table(capsys):
    assert main(["info", "resnet110"]) == 0
    out = capsys.readouterr().out
    assert "1,727,962 parameters" in out
    assert "[3x3, 16; 3x3, 16] x 18" in out and "64x8x8" in out
    assert "0.253 G multiply-adds" in out


def test_info_at_another_input_size(capsys):
    assert main(["info", "resnet50", "--input-size", "128"]) == 0
    assert "2048x4x4" in capsys.readouterr().out


@pytest.mark.parametrize("args, fragment", [
    (["info", "resnet111"], "unknown model 'resnet111'; did you mean: resnet110"),
    (["models", "vgg*"], "no model matches 'vgg*'"),
])
def test_bad_names_give_one_clear_line_and_exit_2(args, fragment, private_cache):
    result = run_cli(*args, cache=private_cache)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"resnetlab: error: {result.stderr.split('error: ', 1)[1].strip()}"]
    assert fragment in result.stderr and "Traceback" not in result.stderr


def test_debug_shows_the_traceback(private_cache):
    result = run_cli("--debug", "info", "resnet111", cache=private_cache)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_help_works_for_every_command(private_cache):
    for args in (["--help"], ["models", "--help"], ["info", "--help"]):
        result = run_cli(*args, cache=private_cache)
        assert result.returncode == 0 and "usage: resnetlab" in result.stdout
