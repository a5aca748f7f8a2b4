"""The import graph of the package: no circles, and the layers point down (nothing below the
tuner imports it; no module imports the `sched_dsl` facade)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# package name -> folder, as pyproject.toml's package-dir maps them
FOLDERS = {"sched_dsl": ROOT / "sched_dsl", "sched_dsl.dialects": ROOT / "dialects",
           "sched_dsl.lowering": ROOT / "lowering", "sched_dsl.tuner": ROOT / "tuner"}
ABOVE_TUNER = ("sched_dsl.tuner", "sched_dsl.cli")  # the tuner itself and the command lines


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join((package, *parts))
            if name.startswith("sched_dsl.") and package == "sched_dsl" and parts and \
                    f"sched_dsl.{parts[0]}" in FOLDERS:
                continue  # e.g. a stray sched_dsl/tuner folder: not what installs
            found[name] = path
    return found


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every sched_dsl module `path` imports, at the top or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                     for a in node.names]
        else:
            continue
        out.update(n for n in names if n == "sched_dsl" or n.startswith("sched_dsl."))
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports_of(p, set(mods)) - {m} for m, p in mods.items()}


def test_no_module_imports_the_facade():
    offenders = sorted(m for m, deps in graph().items() if "sched_dsl" in deps and m != "sched_dsl")
    assert offenders == [], f"import the module you need, not `sched_dsl`: {offenders}"


def test_nothing_below_the_tuner_imports_it():
    offenders = sorted((m, d) for m, deps in graph().items() for d in deps
                       if d.startswith("sched_dsl.tuner") and m != "sched_dsl" and not m.startswith(ABOVE_TUNER))
    assert offenders == []


def test_no_import_circles():
    g = {m: deps for m, deps in graph().items() if m != "sched_dsl"}  # the facade sits on top
    state: dict[str, int] = {}
    cycles = []

    def visit(m, stack):
        state[m] = 1
        for d in sorted(g.get(m, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert cycles == [], "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_every_module_is_seen():
    mods = modules()
    for expected in ("sched_dsl.build", "sched_dsl.runtime.cuda", "sched_dsl.graph.executor",
                     "sched_dsl.testing.check", "sched_dsl.cli.opt", "sched_dsl.tuner.cli",
                     "sched_dsl.lowering.apply_schedule", "sched_dsl.dialects.sched"):
        assert expected in mods
