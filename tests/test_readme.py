"""The README's command-line examples are real: each one is run and must print exactly what the README shows.

An example is a line ``$ difftape ARGS`` (or ``$ echo TEXT | difftape ARGS``, TEXT fed to stdin) inside a
```console fenced block, followed by the output a terminal shows (stdout and stderr, in order) up to the
next ``$`` line or the end of the block. Other commands in console blocks (installing, piping into other
tools) are not run. ``DIFFTAPE_README`` may name another file, to check a draft.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from difftape.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = Path(os.environ.get("DIFFTAPE_README") or ROOT / "README.md")

_FENCE = re.compile(r"^```console[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


@dataclass
class Example:
    line: int  # 1-based line of the command in the README
    command: str
    argv: list[str]
    stdin: str | None
    expected: str


def parse_examples(text: str) -> list[Example]:
    """Every runnable ``$ difftape ...`` example of the console blocks in ``text``."""
    examples = []
    for block in _FENCE.finditer(text):
        first_line = text.count("\n", 0, block.start(1)) + 1
        current: Example | None = None
        output: list[str] = []
        for offset, line in enumerate(block.group(1).splitlines()):
            if line.startswith("$ "):
                if current is not None:
                    current.expected = "\n".join(output)
                    examples.append(current)
                current, output = _command(line[2:], first_line + offset), []
            elif current is not None:
                output.append(line)
        if current is not None:
            current.expected = "\n".join(output)
            examples.append(current)
    return [e for e in examples if e.argv]


def _command(command: str, line: int) -> Example | None:
    stdin = None
    words = shlex.split(command)
    if "|" in words:
        cut = words.index("|")
        left, words = words[:cut], words[cut + 1 :]
        if left[:1] != ["echo"] or "|" in words:
            return Example(line, command, [], None, "")
        stdin = " ".join(left[1:]) + "\n"
    if words[:1] != ["difftape"] or any(w in (">", ">>", "<", "&&", ";") for w in words):
        return Example(line, command, [], None, "")
    return Example(line, command, words[1:], stdin, "")


def _normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


EXAMPLES = parse_examples(README.read_text(encoding="utf-8")) if README.exists() else []


def test_parser_reads_console_blocks():
    text = 'Intro\n\n```console\n$ difftape eval "x**3" --at 2\nout 1\nout 2\n$ pip install .\n```\n' \
           "```console\n$ echo x | difftape eval -\n8\n```\n"
    examples = parse_examples(text)
    assert [(e.line, e.argv, e.stdin, e.expected) for e in examples] == [
        (4, ["eval", "x**3", "--at", "2"], None, "out 1\nout 2"),
        (10, ["eval", "-"], "x\n", "8"),
    ]


@pytest.mark.skipif(not EXAMPLES, reason=f"{README.name} has no ```console blocks with difftape commands yet")
@pytest.mark.parametrize("example", EXAMPLES, ids=[f"line{e.line}" for e in EXAMPLES])
def test_readme_example(example: Example):
    result = CliRunner().invoke(cli, example.argv, input=example.stdin, prog_name="difftape")
    assert result.exit_code in (0, 1, 2)
    assert "Traceback" not in result.output
    where = f"{README.name}:{example.line}: $ {example.command}"
    assert _normalise(result.output) == _normalise(example.expected), where
