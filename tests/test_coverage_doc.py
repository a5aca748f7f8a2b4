"""docs/coverage.md and the README's coverage table are what scripts/coverage.py renders from
the recorded results (benchmarks/data/coverage.json): nobody edits them by hand."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def coverage_script():
    spec = importlib.util.spec_from_file_location("coverage_script", ROOT / "scripts" / "coverage.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_and_coverage_doc_are_rendered_from_the_results():
    cov = coverage_script()
    results = json.loads((ROOT / "benchmarks" / "data" / "coverage.json").read_text())
    readme = (ROOT / "README.md").read_text()
    table = readme.split(cov.README_BEGIN, 1)[1].split(cov.README_END, 1)[0].strip()
    assert table == cov.readme_table(results)
    assert (ROOT / "docs" / "coverage.md").read_text() == cov.render(results)


def test_readme_table_counts_what_the_results_say():
    cov = coverage_script()
    results = {"operators": {"Relu": {"opencl": "pass", "cuda_text": "yes", "runs_as": "unary"},
                             "Erf": {"opencl": "wrong", "cuda_text": "yes", "runs_as": "unary"}},
               "backend": {"a": {"kind": "simple", "status": "pass", "outside": ""},
                           "b": {"kind": "simple", "status": "unsupported", "outside": "3-D conv"},
                           "light_x": {"kind": "light", "status": "pass", "outside": ""}},
               "models": {}}
    table = cov.readme_table(results)
    assert "| ONNX operators, one-node models | 1 of 2 | 2 of 2 |" in table
    assert "| 1 of 1 (the 1 outside: a named import error) |" in table
    assert "as shipped | 1 of 1 |" in table
