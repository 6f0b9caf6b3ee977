"""docs/export.md runs as written: its python blocks in order in one namespace, then its console blocks.

In a console block, each `$ kiln ...` line runs as `python -m kiln ...` in the directory of the
`path` the python blocks saved; every line shown after it must appear in what it printed, and a
shown error (`kiln <command>: ...`) means exit status 1.
"""
import contextlib
import io
import os
import re
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(ROOT, "docs", "export.md")


def _blocks(lang: str) -> list[str]:
    with open(DOC) as f:
        text = f.read()
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def test_export_doc_python_and_console_blocks_run():
    python_blocks = _blocks("python")
    assert len(python_blocks) >= 6
    ns: dict = {"__name__": "export_doc"}
    for k, block in enumerate(python_blocks):
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(block, f"docs/export.md python block {k}", "exec"), ns)
    cwd = os.path.dirname(ns["path"])
    commands = []
    for block in _blocks("console"):
        for line in block.splitlines():
            if line.startswith("$ "):
                commands.append((line[2:], []))
            elif line.strip():
                commands[-1][1].append(line.strip())
    assert commands
    env = dict(os.environ, PYTHONPATH=ROOT)
    for command, expected in commands:
        argv = shlex.split(command)
        assert argv[0] == "kiln"
        proc = subprocess.run([sys.executable, "-m", "kiln", *argv[1:]], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=300)
        error = bool(expected) and re.match(r"kiln \w+: ", expected[0]) is not None
        assert proc.returncode == (1 if error else 0), (command, proc.stderr)
        shown = proc.stderr if error else proc.stdout
        for want in expected:
            assert want in shown, (command, want, shown)
    assert os.path.exists(os.path.join(cwd, "y.npy"))
