"""Hostile inputs end in a clear error of ours (with a location where there is one), never in
a traceback, another library's exception, a hang or a silent wrong answer (issue 15, items
8-12). The last tests run a small slice of scripts/adversarial.py's generated cases."""

from __future__ import annotations

import pytest

from sched_dsl.cli.opt import sched_opt_main


def opt(tmp_path, capsys, text: str | bytes, *args: str):
    """Runs sched-opt in this process on `text`; (exit code, stdout, stderr)."""
    path = tmp_path / "in.mlir"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    code = sched_opt_main([str(path), *args])
    out, err = capsys.readouterr()
    return code, out, err, str(path)


def nested_generic(depth: int) -> str:
    return '"builtin.module"() ({\n' * depth + "builtin.module {}\n" + "}) : () -> ()\n" * depth


def nested_custom(depth: int, op: str = "builtin.module") -> str:
    return f"{op} {{\n" * depth + "}\n" * depth


# -- item 8: sched-opt on deep, wide and undecodable input ---------------------------------------

@pytest.mark.parametrize("text", [nested_generic(100), nested_custom(200)], ids=["generic100", "custom200"])
def test_moderately_deep_nesting_is_read(tmp_path, capsys, text):
    code, out, err, _ = opt(tmp_path, capsys, text)
    assert code == 0, err
    assert out.count("builtin.module") >= 100


@pytest.mark.parametrize("text", [nested_generic(1000), nested_custom(1000), nested_custom(500, "sched.schedule"),
                                  "builtin.module attributes {x = " + "[" * 100_000 + "]" * 100_000 + "} {}\n"],
                         ids=["generic1000", "custom1000", "schedule500", "attribute100000"])
def test_too_deep_nesting_is_a_located_error(tmp_path, capsys, text):
    code, out, err, path = opt(tmp_path, capsys, text)
    assert code == 1, err
    assert out == ""
    assert err.startswith(f"{path}:") and "nested" in err, err
    assert "internal error" not in err and "Recursion" not in err


@pytest.mark.parametrize("width", [17179869184, 16777216])
def test_absurd_integer_width_is_a_located_error(tmp_path, capsys, width):
    code, _, err, path = opt(tmp_path, capsys, f"builtin.module attributes {{x = 5 : i{width}}} {{}}\n")
    assert code == 1
    assert f"{path}:1:" in err and str(width) in err and "16777215" in err, err


def test_wide_but_legal_integer_type_is_read(tmp_path, capsys):
    code, out, err, _ = opt(tmp_path, capsys, "builtin.module attributes {x = 5 : i4096} {}\n")
    assert code == 0, err
    assert "i4096" in out


def test_invalid_utf8_is_a_located_error(tmp_path, capsys):
    code, out, err, path = opt(tmp_path, capsys, b'builtin.module {\n  %x = \xff\xfe "x"\n}\n')
    assert code == 1
    assert err.startswith(f"{path}:2:8: error:") and "UTF-8" in err and "0xff" in err, err


def test_integer_literal_too_long_is_a_located_error(tmp_path, capsys):
    code, _, err, path = opt(tmp_path, capsys, "builtin.module attributes {x = " + "9" * 5000 + " : i64} {}\n")
    assert code == 1
    assert err.startswith(f"{path}:1:") and "internal error" not in err, err


def test_knob_of_a_huge_extent_verifies_at_once(tmp_path, capsys):
    text = """builtin.module {
  sched.schedule {
    %t = sched.knob "t" [4, 3] divisors of 9223372036854775806
  }
}
"""
    code, _, err, path = opt(tmp_path, capsys, text)
    assert code == 1
    assert f"{path}:3:" in err and "[4]" in err, err
