"""Every code block of README.md and docs/*.md does what it shows, exactly as written.

- ```python blocks are saved as a file and run with `python block.py`; ```sh blocks with
  `bash -e block.sh`; both from the repository root, with the virtual environment's bin/ first
  on PATH. The root is a fresh folder per block holding links to every top-level entry of the
  checkout, so the blocks see the repository's files as a user at its root does, while the
  files they write (records, plots, mm.mlir) land in that folder, not in the checkout.
- A block whose first line is `# needs a CUDA GPU` runs only where the CUDA runtime finds a
  GPU; a block whose first line (after that one) is `# long run` (a measurement that takes
  minutes) runs only with SCHED_DSL_DOCS_LONG=1. Both are skipped otherwise, and say so.
- Blocks that run `scripts/dev.sh` are not run here: it sets up .venv and runs this suite;
  .ci/run runs it, and tests/test_examples.py runs the demo's script.
- ```mlir blocks must parse (and verify) as a whole module in sched-dsl's context.
- ```text blocks are output and are not run, nor are other languages (c, toml). A fence
  without a language is an error: say what the block is.
"""

from __future__ import annotations

import functools
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
NEEDS_GPU = "# needs a CUDA GPU"
LONG_RUN = "# long run"
BLOCK_TIMEOUT_S = 600


class Block:
    def __init__(self, where: str, line: int, lang: str, text: str):
        self.where, self.line, self.lang, self.text = where, line, lang, text
        lines = [s.strip() for s in text.splitlines()]
        self.needs_gpu = lines[:1] == [NEEDS_GPU]
        self.long_run = lines[self.needs_gpu:self.needs_gpu + 1] == [LONG_RUN]
        self.runs_dev_sh = "scripts/dev.sh" in text


def read_blocks(path: pathlib.Path, root: pathlib.Path = ROOT) -> list[Block]:
    """The fenced blocks of a Markdown file, each named by its path under `root` and the line
    of its opening fence; indented fences (inside list items) lose their indentation."""
    name, blocks, lines, i = str(path.relative_to(root)), [], path.read_text().splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = len(m.group(1)), m.group(2), i
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][indent:] if not lines[i][:indent].strip() else lines[i].lstrip())
            i += 1
        if i == len(lines):
            raise ValueError(f"{name}:{start + 1}: code block never closed")
        blocks.append(Block(f"{name}:{start + 1}", start + 1, lang, "\n".join(body) + "\n"))
        i += 1
    return blocks


BLOCKS = [b for doc in DOCS for b in read_blocks(doc)]
RUN_LANGS = ("python", "sh")


@functools.cache
def cuda_unavailable() -> str | None:
    sys.path.insert(0, str(ROOT / "tests"))
    from gpu_cases import cuda_unavailable as why
    return why()


def case_id(b: Block) -> str:
    return b.where + ("-needs-cuda" if b.needs_gpu else "") + ("-long" if b.long_run else "")


@functools.cache
def tracked_top_level() -> frozenset[str] | None:
    """The top-level entries git tracks (None outside a git checkout) and .venv, which the
    README's set-up makes: what a fresh clone has after it, so a block cannot lean on files
    that only this checkout made (models/, records)."""
    run = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if run.returncode != 0:
        return None
    return frozenset(line.split("/", 1)[0] for line in run.stdout.splitlines()) | {".venv"}


def repo_root_view(tmp_path: pathlib.Path) -> pathlib.Path:
    """A folder that looks like a fresh clone's root: a link to each entry git tracks."""
    view = tmp_path / "root"
    view.mkdir()
    tracked = tracked_top_level()
    for entry in ROOT.iterdir():
        if entry.name != ".git" and (tracked is None or entry.name in tracked):
            (view / entry.name).symlink_to(entry)
    return view


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang in RUN_LANGS], ids=case_id)
def test_block_runs(block: Block, tmp_path):
    if block.runs_dev_sh:
        pytest.skip("runs scripts/dev.sh (set-up and this suite): .ci/run runs it")
    if block.needs_gpu and (why := cuda_unavailable()):
        pytest.skip(f"needs a CUDA GPU: {why}")
    if block.long_run and os.environ.get("SCHED_DSL_DOCS_LONG") != "1":
        pytest.skip("a long run: set SCHED_DSL_DOCS_LONG=1 to run it")
    script = tmp_path / ("block.py" if block.lang == "python" else "block.sh")
    script.write_text(block.text)
    command = [sys.executable, str(script)] if block.lang == "python" else ["bash", "-e", str(script)]
    env = dict(os.environ, PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    env.pop("PYTHONPATH", None)
    run = subprocess.run(command, cwd=repo_root_view(tmp_path), env=env, capture_output=True, text=True,
                         timeout=BLOCK_TIMEOUT_S)
    assert run.returncode == 0, (
        f"{block.where}: the {block.lang} block exits with {run.returncode}\n--- block\n{block.text}"
        f"--- stdout (end)\n{run.stdout[-3000:]}\n--- stderr (end)\n{run.stderr[-5000:]}")


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "mlir"], ids=case_id)
def test_mlir_block_parses(block: Block):
    from xdsl.parser import Parser

    from sched_dsl.context import make_context

    module = Parser(make_context(), block.text, name=block.where).parse_module()
    module.verify()


def test_every_block_says_its_language():
    unlabelled = [b.where for b in BLOCKS if not b.lang]
    assert not unlabelled, f"code blocks without a language (```text for output): {unlabelled}"


def test_reader_finds_blocks(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n```python\nif 1:\n    print(1)\n```\n- item\n  ```sh\n  # needs a CUDA GPU\n  # long run\n"
                   "  echo hi\n  ```\n```text\nout\n```\n")
    py, sh, text = read_blocks(doc, tmp_path)
    assert (py.line, py.lang, py.text) == (2, "python", "if 1:\n    print(1)\n")
    assert (sh.line, sh.lang, sh.text) == (7, "sh", "# needs a CUDA GPU\n# long run\necho hi\n")
    assert sh.needs_gpu and sh.long_run and not py.needs_gpu
    assert text.lang == "text"



LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lstrip("#").strip().lower())
    return text.replace(" ", "-")


def test_links_resolve():
    """Every relative link of the README and docs/ names a file that exists and, after `#`, a
    heading of that file."""
    broken = []
    for doc in DOCS:
        for target in LINK.findall(doc.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto
            path, _, frag = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            if not dest.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
            elif frag and dest.suffix == ".md":
                headings = {anchor(line) for line in dest.read_text().splitlines() if line.startswith("#")}
                if frag not in headings:
                    broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)
