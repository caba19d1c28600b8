"""Never lose more than minutes: checkpoints within an epoch (by iterations or by time), the previous ones kept,
a kill during a write leaving the last good one intact, and a resume that skips an unreadable newest file. Each
resumed run must end with the bits of an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from resnetlab.config import save_config
from resnetlab.training.checkpoint import load_checkpoint
from resnetlab.training.environment import training_segments
from resnetlab.training.session import train
from resnetlab.training.trainer import TrainingInterrupted
from test_training import final_weights, quiet, tiny_config

EVERY = 4  # train.checkpoint_every_iterations in these tests; TINY's epochs are 6 iterations
# A run that SIGKILLs itself: after iteration KILL_AT (a probe), or in the middle of its DIE_IN_SAVE-th checkpoint
# write (torch.save writes the whole file, then half of it is cut off and the process dies before the rename).
SCRIPT = """
import os, signal, sys
import torch
from resnetlab.config import load_config
from resnetlab.training.session import train

config, kill_at, die_in_save = load_config(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
real_save, saves = torch.save, []

def dying_save(state, handle):
    saves.append(1)
    real_save(state, handle)
    if len(saves) == die_in_save:
        handle.flush()
        handle.truncate(handle.tell() // 2)
        os.kill(os.getpid(), signal.SIGKILL)

class KillAfter:
    def start(self, run, run_dir, resumed_at): pass
    def after_step(self, run, loss, error):
        if run.state.iteration == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    def close(self): pass

torch.save = dying_save
train(config, log=lambda *args: None, probes=[KillAfter()])
"""


def run_and_kill(tmp_path, config, kill_at: int = 0, die_in_save: int = 0) -> None:
    script, recipe = tmp_path / "killed_run.py", tmp_path / "killed.yaml"
    script.write_text(SCRIPT)
    save_config(config, recipe)
    same_threads = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # the same sums, the same bits
    result = subprocess.run([sys.executable, str(script), str(recipe), str(kill_at), str(die_in_save)],
                            capture_output=True, text=True, env=same_threads, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr


def checkpointed(tmp_path, name, *extra):
    return tiny_config(tmp_path, f"run.name={name}", f"train.checkpoint_every_iterations={EVERY}", *extra)


def test_a_kill_after_a_mid_epoch_checkpoint_loses_at_most_the_interval(tmp_path):
    train(tiny_config(tmp_path, "run.name=straight"), log=quiet)
    run_and_kill(tmp_path, checkpointed(tmp_path, "killed"), kill_at=11)
    folder = tmp_path / "killed"
    saved = load_checkpoint(folder / "last.pt")["train_state"]
    assert (saved["iteration"], saved["epoch"], saved["batch"]) == (8, 1, 2)  # mid-epoch 2: 3 iterations lost
    assert 11 - saved["iteration"] <= EVERY
    assert load_checkpoint(folder / "last-1.pt")["train_state"]["iteration"] == 6  # the one before it, kept
    train(resume=folder, log=quiet)
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(folder)
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)
    # The record names the machine of each part, so a run finished elsewhere does not pass for one machine's.
    segments = training_segments(json.loads((folder / "environment.json").read_text()))
    assert [segment["at_iteration"] for segment in segments] == [0, 8]
    assert all(segment["cpu"] and segment["precision"]["precision"] == "fp32" for segment in segments)


def test_a_resume_killed_before_its_first_checkpoint_drops_out_of_the_record():
    # Resumed at 2,982 on machine "b", killed before a checkpoint, resumed at 2,982 again on "c": the weights hold
    # no step of "b"'s. A resume behind the last one (from an older checkpoint) likewise drops what came after.
    started = {"cpu": "a", "resumed": [{"cpu": "b", "at_iteration": 2982}, {"cpu": "c", "at_iteration": 2982}]}
    assert [(s["cpu"], s["at_iteration"]) for s in training_segments(started)] == [("a", 0), ("c", 2982)]
    rewound = {"cpu": "a", "resumed": [{"cpu": "b", "at_iteration": 100}, {"cpu": "c", "at_iteration": 300},
                                       {"cpu": "d", "at_iteration": 200}]}
    assert [(s["cpu"], s["at_iteration"]) for s in training_segments(rewound)] == [("a", 0), ("b", 100), ("d", 200)]
    assert training_segments({}) == []


def test_a_kill_during_a_write_leaves_the_last_good_checkpoint(tmp_path):
    train(tiny_config(tmp_path, "run.name=straight"), log=quiet)
    # torch.save calls: last.pt at 4, best.pt and last.pt at 6 (epoch 1 ends), then it dies writing last.pt at 8
    run_and_kill(tmp_path, checkpointed(tmp_path, "killed"), die_in_save=4)
    folder = tmp_path / "killed"
    assert load_checkpoint(folder / "last.pt")["train_state"]["iteration"] == 6
    assert list(folder.glob(".last.pt.tmp*"))  # the half-written file never replaced anything
    messages = []
    train(resume=folder, log=messages.append)
    assert not list(folder.glob(".last.pt.tmp*"))  # cleared on resume
    assert any("resuming" in m and "iteration 6" in m for m in messages)
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(folder)
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)


def test_an_unreadable_newest_checkpoint_resumes_from_the_previous(tmp_path):
    train(tiny_config(tmp_path, "run.name=straight"), log=quiet)
    with pytest.raises(TrainingInterrupted):
        train(checkpointed(tmp_path, "broken"), stop_at_iteration=9, log=quiet)
    folder = tmp_path / "broken"
    newest = folder / "last.pt"
    assert load_checkpoint(newest)["train_state"]["iteration"] == 9
    newest.write_bytes(newest.read_bytes()[:1000])  # a truncated copy
    messages = []
    train(resume=folder, log=messages.append)
    notes = [m for m in messages if "last.pt" in m and "previous checkpoint" in m]
    assert len(notes) == 1 and "truncated" in notes[0] and "last-1.pt" in notes[0]
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(folder)
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)


def test_checkpoints_by_time_and_how_many_are_kept(tmp_path, monkeypatch):
    import resnetlab.training.session as session

    clock = iter(range(0, 10_000, 7))  # each look at the clock: 7 s later
    monkeypatch.setattr(session, "_now", lambda: next(clock))
    # Every 0.5 minutes, no epoch checkpoints but the last: the clock is read after each step (and at each
    # save), so 30 s have passed after every 5th step: saves at 5, 10, 15 and the end, 18. Three are kept.
    train(tiny_config(tmp_path, "run.name=timed", "train.checkpoint_every_minutes=0.5", "train.checkpoint_every=100",
                      "train.keep_checkpoints=3"), log=quiet)
    folder = tmp_path / "timed"
    saved = [load_checkpoint(folder / name)["train_state"]["iteration"]
             for name in ("last.pt", "last-1.pt", "last-2.pt")]
    assert saved == [18, 15, 10] and not (folder / "last-3.pt").exists()
    train(tiny_config(tmp_path, "run.name=single", "train.keep_checkpoints=1"), log=quiet)
    assert [p.name for p in (tmp_path / "single").glob("last*.pt")] == ["last.pt"]


def test_steps_read_in_groups_checkpoint_once_per_crossed_interval(tmp_path, monkeypatch):
    # On a GPU the steps' numbers arrive in groups (here forced: 4 on the CPU), all at the group's last position.
    # Every 3 iterations: the groups end at 4, 6 (the epoch's end), 10 and the stop at 11; each group that
    # crossed a multiple of 3 saves once, so the two kept checkpoints are the stop's and the one before it.
    import resnetlab.training.session as session

    monkeypatch.setattr(session, "host_sync_interval", lambda run, probes: 4)
    with pytest.raises(TrainingInterrupted):
        train(tiny_config(tmp_path, "run.name=grouped", "train.checkpoint_every_iterations=3",
                          "train.checkpoint_every=100"), stop_at_iteration=11, log=quiet)
    folder = tmp_path / "grouped"
    saved = [load_checkpoint(folder / name)["train_state"]["iteration"] for name in ("last.pt", "last-1.pt")]
    assert saved == [11, 10]


def test_resuming_a_run_that_ended_mid_epoch_keeps_its_last_record(tmp_path):
    # 8 iterations of 6-iteration epochs: the run ends in epoch 2, whose record is written before the final
    # checkpoint although that checkpoint's epoch counter still says epoch 2 is in progress.
    config = tiny_config(tmp_path, "run.name=short", "train.iterations=8")
    first = train(config, log=quiet)
    metrics = (tmp_path / "short" / "metrics.jsonl").read_text()
    assert [json.loads(line)["epoch"] for line in metrics.splitlines()] == [1, 2]
    again = train(resume=tmp_path / "short", log=quiet)
    assert (tmp_path / "short" / "metrics.jsonl").read_text() == metrics
    assert again["final_test_error"] == first["final_test_error"] and again["epochs"] == 2
