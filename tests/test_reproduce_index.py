"""`resnetlab report --index DIR`: one table of every claim of every report under DIR, generated from the records
(each report is rebuilt first), written between markers into DIR/README.md without touching the prose around it."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from resnetlab.errors import UsageError
from resnetlab.reproduce.experiment import get_experiment
from resnetlab.reproduce.index import BEGIN, END, INDEX_FILE, report_folders, stand_ins, write_index
from resnetlab.reproduce.report import RESULTS_JSON, VERDICTS, build_report
from resnetlab.reproduce.runner import reproduce

QUIET = {"log": lambda message: None, "progress": False}
COMMITTED_RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"  # the reports the project publishes
REBUILD = "run `resnetlab report --index docs/results` and commit what it writes"


@pytest.fixture(scope="module")
def results_root(tmp_path_factory, smoke_out):
    """Two report folders alone, as under docs/results (their runs come from the session's smoke reproductions)."""
    root = tmp_path_factory.mktemp("results")
    for name in ("stochastic-depth", "warmup-pilot"):
        report = reproduce(get_experiment(name), "smoke", out_dir=smoke_out, **QUIET)
        shutil.copytree(report, root / report.name)
    return root


def _table(text: str) -> list[str]:
    return [line for line in text[text.index(BEGIN):text.index(END)].splitlines() if line.startswith("| [")]


def test_every_claim_of_every_report_gets_a_line_with_its_verdict_and_numbers(results_root):
    (results_root / "README.md").write_text("# Reproductions\n\nProse a person wrote.\n")
    text = write_index(results_root).read_text()
    assert text.startswith("# Reproductions\n\n" + BEGIN) and "Prose a person wrote." in text
    lines = _table(text)
    expected = 0
    for folder in ("stochastic-depth-smoke", "warmup-pilot-smoke"):
        claims = json.loads((results_root / folder / "results.json").read_text())["claims"]
        expected += len(claims)
        for claim in claims:
            line = next(x for x in lines if f"({folder}/report.md)" in x and claim["statement"] in x)
            assert f"**{VERDICTS[claim['shown']]}**" in line and "`smoke`: 2 iterations |" in line  # no stand-in
    assert len(lines) == expected
    assert write_index(results_root).read_text() == text  # written again: the same file, the prose kept once


def test_verdicts_come_from_the_records_and_outdated_budgets_are_marked(results_root, tmp_path):
    results_root = Path(shutil.copytree(results_root, tmp_path / "results"))  # the fixture stays as built
    folder = results_root / "stochastic-depth-smoke"
    results = json.loads((folder / "results.json").read_text())
    original = results["claims"][0]["shown"]
    results["claims"][0]["shown"] = not original  # a hand edit of the built report ...
    (folder / "results.json").write_text(json.dumps(results))
    manifest = json.loads((folder / "experiment.json").read_text())
    manifest["plan"]["iterations"] = 1  # ... and a report of a budget that has changed since
    (folder / "experiment.json").write_text(json.dumps(manifest))
    done = subprocess.run([sys.executable, "-m", "resnetlab", "report", "--index", str(results_root)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads((folder / "results.json").read_text())["claims"][0]["shown"] == original  # rebuilt
    line = next(x for x in _table((results_root / "README.md").read_text()) if "stochastic-depth-smoke" in x)
    assert "an older budget: the `smoke` budget is now 2 iterations" in line


def test_a_readme_with_one_marker_is_refused_not_doubled(results_root, tmp_path):
    root = Path(shutil.copytree(results_root, tmp_path / "results"))
    (root / "README.md").write_text(f"# Reproductions\n\n{BEGIN}\nA table whose end marker was deleted.\n")
    with pytest.raises(UsageError, match="only one of the claims table's two marker lines"):
        write_index(root)


def test_an_index_of_a_folder_without_reports_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "resnetlab", "report", "--index", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and "no report folder in it" in done.stderr and "Traceback" not in done.stderr


def test_a_budget_that_trains_smaller_nets_says_which_beside_its_claims():
    # identity-activations at `cpu`: the claims speak of depth 110, the runs are ResNet-56 (issue 15's stand-ins).
    rows = [{"model": "resnet56", "recipe_model": "resnet110"}, {"model": "resnet56", "recipe_model": "resnet110"},
            {"model": "resnet56", "recipe_model": "preact_resnet110"},
            {"model": "resnet164", "recipe_model": "resnet164"}]
    assert stand_ins({"rows": rows}) == "; resnet56 stands in for resnet110 and preact_resnet110"
    assert stand_ins({"rows": [{"model": "resnet20"}]}) == ""  # a report built before the field names none


@pytest.mark.skipif(not (COMMITTED_RESULTS / INDEX_FILE).is_file(),
                    reason="docs/results is not beside the tests (an installed copy of the tests)")
def test_the_committed_reports_say_what_their_records_say_with_todays_code(tmp_path):
    # Issue 15: every verdict is generated from the records. A change to a claim's code, or a record added
    # without rebuilding, would leave docs/results saying what the code no longer says.
    root = Path(shutil.copytree(COMMITTED_RESULTS, tmp_path / "results"))
    folders = report_folders(root)
    assert len(folders) >= 10  # the campaign's reports; a lost folder fails here, not silently
    for folder in folders:
        committed = json.loads((folder / RESULTS_JSON).read_text())["claims"]
        build_report(folder)
        rebuilt = json.loads((folder / RESULTS_JSON).read_text())["claims"]
        assert [(c["statement"], c["shown"], c["evidence"]) for c in rebuilt] == \
            [(c["statement"], c["shown"], c["evidence"]) for c in committed], f"{folder.name}: {REBUILD}"
    committed_table = _table((root / INDEX_FILE).read_text())
    assert _table(write_index(root).read_text()) == committed_table, f"the claims table: {REBUILD}"
