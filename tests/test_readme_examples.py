"""The README's Python example and the Python API page's first example, run as written (twice: the
second run continues the study), so the documentation cannot drift from the code."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys

import pytest

from testlib import REPO, cli_env


def _python_blocks(path: str) -> list[str]:
    text = open(os.path.join(REPO, path), encoding="utf-8").read()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _run_twice(code: str, folder) -> list[str]:
    script = folder / "example.py"
    script.write_text(code)
    lines = []
    for _ in range(2):
        out = subprocess.run([sys.executable, str(script)], cwd=folder, env=cli_env(), capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        lines.append(out.stdout.strip().splitlines()[-1])
    return lines


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("page", ["README.md", "docs/python-api.md"])
def test_the_python_example_runs_as_written(page, tmp_path):
    code = _python_blocks(page)[0]
    assert "search.create_study" in code and "study.optimize(objective)" in code
    first, second = _run_twice(code, tmp_path)
    params, n = first.rsplit(" ", 1)
    assert int(n) == 20 and abs(ast.literal_eval(params)["x"] - 0.3) < 0.2
    assert second == first  # the second run continued the finished study: nothing new, same best
