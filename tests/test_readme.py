import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _run(code):
    exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_examples_run(code):
    _run(code)


def test_custom_chain_example_prints_the_corroborated_nodes(capsys):
    _run(next(b for b in BLOCKS if "Corroborate(" in b))
    assert capsys.readouterr().out == "[0, 1, 2]\n"
