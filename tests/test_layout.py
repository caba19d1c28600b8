"""The shape of the code base: small files and functions, no import circles, every module importable on its own,
one error base, one registry type, and a ``--help`` for every command."""

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import resnetlab
from resnetlab.cli import main
from resnetlab.cli.parser import build_parser
from resnetlab.errors import ResnetlabError

SOURCE = Path(resnetlab.__file__).resolve().parent
MAX_FILE_LINES = 300
MAX_FUNCTION_LINES = 60
DECLARATIVE_TABLES = {"build_parser"}  # the argument parser: one long table, no logic


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts[-1] != "__main__":
            found[".".join(parts)] = path
    return found


def test_no_file_is_over_300_lines():
    long = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {name: n for name, n in long.items() if n > MAX_FILE_LINES} == {}


def test_no_function_is_over_60_lines():
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in DECLARATIVE_TABLES:
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}")
    assert long == []


def import_graph() -> dict[str, set[str]]:
    """Module -> the resnetlab modules it imports, at any level (function-level imports count too)."""
    known = modules()
    graph = {name: set() for name in known}
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                submodules = [f"{node.module}.{alias.name}" for alias in node.names]
                found = [m for m in submodules if m in known]
                # `from package import submodule` imports the submodule; `from module import name`, the module.
                targets = found if len(found) == len(submodules) else [node.module, *found]
            else:
                continue
            graph[name] |= {target for target in targets if target in known and target != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for child in sorted(graph[node]):
            if state.get(child) == "open":
                return path[path.index(child):] + [child]
            if child not in state and (cycle := visit(child)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert sum(len(edges) for edges in graph.values()) > 100  # the graph was really read
    assert find_cycle(graph) is None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_every_module_imports_on_its_own():
    # One interpreter, but every resnetlab module is dropped from sys.modules before the next one is imported,
    # so each import runs its own chain (third-party packages such as torch stay loaded: they are not ours).
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        f"for name in {sorted(modules())!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'resnetlab' or m.startswith('resnetlab.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as error:\n"
        "        failed.append(f'{name}: {type(error).__name__}: {error}')\n"
        "print('\\n'.join(failed))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_every_user_facing_error_derives_from_the_one_base():
    graph = import_graph()
    errors = []
    for name in graph:
        if name.startswith("resnetlab.cli"):
            continue
        module = __import__(name, fromlist=["_"])
        for _, value in inspect.getmembers(module, inspect.isclass):
            if value.__module__ == name and issubclass(value, Exception) and value.__name__.endswith("Error"):
                errors.append(value)
    assert len(errors) >= 10  # config, data, model name, checkpoint, export, card, weights, bench, ...
    assert [e.__name__ for e in errors if not issubclass(e, ResnetlabError)] == []


def test_models_and_experiments_share_one_registry_type():
    from resnetlab.models.registry import MODELS
    from resnetlab.registry import Registry
    from resnetlab.reproduce.experiment import EXPERIMENTS

    assert type(MODELS) is Registry and type(EXPERIMENTS) is Registry
    assert "resnet110" in MODELS and "degradation" in EXPERIMENTS


def subcommands() -> list[str]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if a.dest == "command"]
    return list(action.choices)


def test_the_parser_lists_every_command():
    assert set(subcommands()) == {"train", "recipes", "eval", "predict", "export", "models", "info", "bench",
                                  "reproduce", "report"}


@pytest.mark.parametrize("command", subcommands())
def test_every_command_has_a_help(command, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([command, "--help"])
    assert stopped.value.code == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"usage: resnetlab {command}") and "-h, --help" in printed
    assert len(printed.splitlines()) >= 4


def test_a_user_error_is_one_line_and_a_bug_keeps_its_traceback(monkeypatch, capsys):
    import resnetlab.cli.parser as commands  # the parser binds each command to its handler when it is built
    from resnetlab.config import ConfigError

    def raise_config_error(args):
        raise ConfigError("train.lr must be positive, got -1")

    monkeypatch.setattr(commands, "cmd_recipes", raise_config_error)
    assert main(["recipes"]) == 2
    assert capsys.readouterr().err == "resnetlab: error: train.lr must be positive, got -1\n"
    for bug in (TypeError("unsupported operand"), KeyError("epoch")):
        def raise_bug(args, bug=bug):
            raise bug

        monkeypatch.setattr(commands, "cmd_recipes", raise_bug)
        with pytest.raises(type(bug)):
            main(["recipes"])
