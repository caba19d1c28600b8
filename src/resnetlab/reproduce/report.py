"""The report of a reproduction: a table of ours beside the paper's, the claims checked, figures, and how it
was run. Written as Markdown and HTML from one list of blocks; every number is read from the run records in
the report folder, none is typed in."""

from __future__ import annotations

import html
import json
import shlex
from pathlib import Path

from resnetlab.reproduce.experiment import Analysis, get_experiment
from resnetlab.reproduce.results import METRIC_LABELS, ExperimentResults, RowResult, Stats, load_results
from resnetlab.training.environment import describe_machine, training_segments
from resnetlab.training.precision import PrecisionChoice

REPORT_MD, REPORT_HTML, RESULTS_JSON = "report.md", "report.html", "results.json"
VERDICTS = {True: "shown", False: "not shown", None: "cannot tell"}


def close_call_note(close_rows, gap: float | None, runs_per_row: dict[str, int]) -> str:
    """What a reader must know of a verdict whose sides differ by less than `CLOSE_CALL`: owed a second seed
    while any of its close rows has one, or decided by the median over the seeds run."""
    if not close_rows or gap is None:
        return ""
    owed = [row for row in close_rows if runs_per_row.get(row, 0) < 2]
    apart = f"{100 * gap:.2f} points apart"
    if owed:
        return f" (a close call, {apart}: a second seed of {', '.join(owed)} is still to run)"
    seeds = min(runs_per_row[row] for row in close_rows)
    return f" (a close call, {apart}: the median over {seeds} seeds)"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def spread(stats: Stats, scale: float = 100.0, digits: int = 2) -> tuple[str, str]:
    """(median, mean +- std) as the papers print them; the std needs two runs or more."""
    if stats.n == 0:
        return ("diverged" if stats.diverged else "-"), "-"
    median = f"{scale * stats.median:.{digits}f}"
    mean = f"{scale * stats.mean:.{digits}f}"
    mean += f" +- {scale * stats.std:.{digits}f}" if stats.std is not None else ""
    failed = f", {stats.diverged} diverged" if stats.diverged else ""
    return median, f"{mean} (n={stats.n}{failed})"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


# ---- the document -----------------------------------------------------------------------------------------
def _main_table(experiment, results: ExperimentResults, analysis: Analysis) -> tuple[list[str], list[list[str]]]:
    headers = ["row", "model run", "paper (%)", "ours: median (%)", "ours: mean +- std (%)",
               "final test error (%)", "final training error (%)", "training time (median)",
               *analysis.columns]
    table = []
    for row in results.rows:
        median, mean = spread(row.stats(results.metric))
        substituted = row.model != row.recipe_model
        table.append([
            row.label, row.model + (f" (for {row.recipe_model})" if substituted else ""),
            row.paper_text, median, mean,
            spread(row.stats("final_test_error"))[0], spread(row.stats("final_train_error"))[0],
            duration(row.stats("train_seconds").median),
            *(analysis.columns[title].get(row.label, "-") for title in analysis.columns)])
    return headers, table


def _go_on_command(command: str) -> str:
    """The command that trains the rest: ``command`` without `--no-train` and without `--rows` and its labels."""
    try:
        words = shlex.split(command)
    except ValueError:  # a command given by hand that shell rules cannot split: shown as it is
        return command
    kept, in_rows = [], False
    for word in words:
        in_rows = word == "--rows" or (in_rows and not word.startswith("--"))
        if not in_rows and word != "--no-train":
            kept.append(word)
    return shlex.join(kept)


def _setup_lines(results: ExperimentResults) -> list[str]:
    manifest = results.manifest
    plan = manifest["plan"]
    finished = [run for run in results.runs if run.config]
    config = finished[0].config if finished else {}
    train, data = config.get("train", {}), config.get("data", {})
    lines = [f"Command: `{manifest['command']}`"]
    if manifest.get("pending_runs"):
        done = sum(len(row.runs) for row in results.rows)
        go_on = _go_on_command(manifest["command"])
        lines.insert(0, f"**Partial report**: {done} of {done + manifest['pending_runs']} runs have finished; the "
                        f"rest are still to train. `{go_on}` goes on (finished runs are reused).")
    length = (f"{train.get('iterations')} iterations" if train.get("iterations") else f"{train.get('epochs')} epochs")
    recipe = results.rows[0] if results.rows else None
    if recipe is not None:
        milestones = train.get("schedule", {}).get("milestones")
        steps = (f"Learning-rate milestones at iterations {milestones} (the recipe's, scaled to the run)."
                 if milestones else "No learning-rate step falls within the run.")
        lines.append(f"Budget `{manifest['budget']}`: each run trains {length} of batch {train.get('batch_size')}; "
                     f"the paper's recipe trains {recipe.recipe_length} of batch {recipe.recipe_batch_size}. {steps}")
    if plan.get("note"):
        lines.append(plan["note"])
    where = data.get("root") if data.get("name") in ("folder", "cifar10", "cifar100") else "built in"
    lines.append(f"Data: {data.get('name')} ({where}), {data.get('validation_size')} training images held out "
                 f"for validation (split seed {data.get('split_seed')}).")
    lines.append(f"Seeds: {', '.join(str(s) for s in manifest['seeds'])}; statistics over seeds are the median "
                 "(as the Identity Mappings paper reports) and the mean +- sample std.")
    if manifest.get("second_seed_rows"):
        lines.append(f"A second seed is given to {', '.join(manifest['second_seed_rows'])} only: at one seed the sides "
                     "of a claim on them differed by less than 2 points, within what a second seed can reverse.")
    if twins := [f"{row.label}, seed {run.config['train']['seed']}: {run.extras['twin_of']['run']}"
                 for row in results.rows for run in row.runs if "twin_of" in run.extras]:
        lines.append(f"Runs taken from a twin, a finished run of another recipe whose config differs only in its "
                     f"note of the paper (the same net, data, seed and schedule, so one training serves both): "
                     f"{'; '.join(twins)}. Their records, config included, are the twin's.")
    segments = [segment for run in finished for segment in training_segments(run.environment)]
    if segments:
        machines = sorted({describe_machine(segment) for segment in segments})
        commits = sorted({str(segment.get("git_commit")) for segment in segments})
        lines.append(f"Machine: {'; '.join(machines)}. resnetlab at commit {', '.join(commits)}.")
        lines.append(f"Arithmetic: {'; '.join(sorted({_precision(segment) for segment in segments}))}.")
        if differing := _where_each_run_trained(results)[0]:
            lines.append(f"The runs did not all train {' or '.join(WHERE_PHRASES[column] for column in differing)}: "
                         "the table below names each run's."
                         + (" Training times compare only between runs of one machine." if "machine" in differing
                            else ""))
    total = sum(run.summary.get("train_seconds", 0.0) for run in results.runs if run.summary)
    sitting = (f"wall time of the command: {duration(manifest.get('wall_seconds'))}" if not manifest.get("runs_reused")
               else f"wall time of its last sitting (runs trained in it: {manifest['runs_trained']}; finished "
                    f"runs reused: {manifest['runs_reused']}): {duration(manifest.get('wall_seconds'))}")
    lines.append(f"Training time over all runs: {duration(total)} (evaluation excluded); {sitting}.")
    return lines


def _precision(environment: dict) -> str:
    # Records written before train.precision existed trained in float32.
    return PrecisionChoice(**environment["precision"]).describe() if "precision" in environment else "precision fp32"


WHERE_PHRASES = {"machine": "on one machine", "precision": "in one precision", "commit": "at one commit"}


def _where(segment: dict) -> dict:
    """Where one stretch of a run trained, as the per-run table names it."""
    precision = (segment.get("precision") or {}).get("precision", "fp32")
    return {"machine": describe_machine(segment), "precision": precision,
            "commit": str(segment.get("git_commit"))[:7], "from": segment["at_iteration"]}


def _where_each_run_trained(results: ExperimentResults) -> tuple[list[str], list[list[str]]]:
    """The columns in which the runs differ (of machine, precision, commit) and a row per finished run (row,
    seed, those columns, training time); nothing where one line of the setup says it for all. A run resumed on
    another machine lists each machine with the iteration it took over from."""
    runs = [(row, run) for row in results.rows for run in row.runs if run.environment]
    where = [[_where(segment) for segment in training_segments(run.environment)] for _, run in runs]
    differing = [column for column in WHERE_PHRASES
                 if len({segment[column] for segments in where for segment in segments}) > 1]
    if not differing:
        return [], []

    def cell(segments: list[dict], column: str) -> str:
        if len({segment[column] for segment in segments}) == 1:
            return segments[0][column]
        return "; ".join(f"{segment[column]} (from iteration {segment['from']:,})" for segment in segments)

    return (differing,
            [[row.label, str(run.environment.get("seed", "-")), *(cell(segments, column) for column in differing),
              duration((run.summary or {}).get("train_seconds"))] for (row, run), segments in zip(runs, where)])


def build_blocks(experiment, results: ExperimentResults, analysis: Analysis) -> list[tuple]:
    manifest = results.manifest
    blocks: list[tuple] = [("h", 1, f"{experiment.title} (budget: {manifest['budget']})"),
                           ("p", f"{experiment.paper}. {experiment.summary}"),
                           ("h", 2, "How this was run"), ("list", _setup_lines(results))]
    differing, where = _where_each_run_trained(results)
    if where:
        blocks.append(("table", ["row", "seed", *differing, "training time"], where))
    blocks.append(("h", 2, "Ours beside the paper"))
    runs_per_row = {row.label: len(row.runs) for row in results.rows}
    headers, table = _main_table(experiment, results, analysis)
    blocks += [("p", f"The paper's number and ours: {METRIC_LABELS[results.metric]}, the median over seeds, then the "
                     "mean +- sample std. Final errors are at the last iteration; the final training error is the "
                     "mean over the last window of iterations of the training curve."),
               ("table", headers, table)]
    blocks += [("h", 2, "The paper's claims at this budget"),
               ("list", [f"**{VERDICTS[c.shown]}**{close_call_note(c.close_rows, c.gap, runs_per_row)}: "
                         f"{c.statement} {c.evidence}" for c in analysis.claims]
                or ["(no claim is checked by this experiment)"])]
    if analysis.figures:
        blocks.append(("h", 2, "Figures"))
        blocks += [("img", figure.file, figure.caption) for figure in analysis.figures]
    if analysis.notes:
        blocks += [("h", 2, "Why our numbers differ from the paper's"), ("list", analysis.notes)]
    return blocks


def render_markdown(blocks: list[tuple]) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            out.append(f"{'#' * block[1]} {block[2]}\n")
        elif kind == "p":
            out.append(f"{block[1]}\n")
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in block[1]) + "\n")
        elif kind == "table":
            headers, rows = block[1], block[2]
            out.append("| " + " | ".join(headers) + " |\n|" + "---|" * len(headers) + "\n"
                       + "\n".join("| " + " | ".join(row) + " |" for row in rows) + "\n")
        elif kind == "img":
            out.append(f"![{block[2]}]({block[1]})\n\n*{block[2]}*\n")
    return "\n".join(out)


def _inline_html(text: str) -> str:
    """Escape, then the two inline marks the reports use: **bold** and `code`."""
    parts = html.escape(text).split("**")
    text = "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))
    parts = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def render_html(blocks: list[tuple], title: str) -> str:
    body = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            body.append(f"<h{block[1]}>{_inline_html(block[2])}</h{block[1]}>")
        elif kind == "p":
            body.append(f"<p>{_inline_html(block[1])}</p>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline_html(item)}</li>" for item in block[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>" for row in block[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            body.append(f'<figure><img src="{html.escape(block[1])}" alt="{html.escape(block[2])}">'
                        f"<figcaption>{_inline_html(block[2])}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:72em;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left}"
             "img{max-width:100%}figcaption{font-style:italic}")
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _results_json(experiment, results: ExperimentResults, analysis: Analysis) -> dict:
    def row_data(row: RowResult) -> dict:
        data = {"label": row.label, "model": row.model, "recipe_model": row.recipe_model,
                "paper_error_percent": row.paper_error, "runs": []}
        for key in dict.fromkeys((results.metric, "final_test_error", "final_train_error", "train_seconds")):
            stats = row.stats(key)
            data[key] = {"values": list(stats.values), "median": stats.median, "mean": stats.mean,
                         "std": stats.std, "diverged": stats.diverged}
        data["runs"] = [run.name for run in row.runs]
        if twins := {run.name: run.extras["twin_of"]["run"] for run in row.runs if "twin_of" in run.extras}:
            data["twin_of"] = twins  # run name -> the run of another recipe that trained it
        return data

    return {"experiment": experiment.name, "budget": results.manifest["budget"],
            "rows": [row_data(row) for row in results.rows],
            "claims": [{"statement": c.statement, "shown": c.shown, "evidence": c.evidence,
                        "close_rows": list(c.close_rows), "gap": c.gap} for c in analysis.claims]}


def build_report(report_dir: str | Path) -> Path:
    """Write report.md, report.html, results.json and the figures of a report folder from its records."""
    report_dir = Path(report_dir)
    results = load_results(report_dir)
    experiment = get_experiment(results.manifest["experiment"])
    # Manifests written before they recorded the budget's metric: the plan's, as the experiment defines it.
    results.manifest["plan"].setdefault("metric", experiment.plans[results.manifest["budget"]].metric)
    analysis = experiment.analyze(results, report_dir)
    blocks = build_blocks(experiment, results, analysis)
    (report_dir / REPORT_MD).write_text(render_markdown(blocks))
    (report_dir / REPORT_HTML).write_text(render_html(blocks, experiment.title))
    (report_dir / RESULTS_JSON).write_text(json.dumps(_results_json(experiment, results, analysis), indent=2) + "\n")
    return report_dir / REPORT_MD
