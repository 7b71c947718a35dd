from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NAB_DIR = ROOT.parent / "shared" / "datasets" / "NAB"


@pytest.fixture
def nab_dir():
    if not NAB_DIR.is_dir():
        pytest.skip(f"NAB corpus not found at {NAB_DIR} (it lives in ../shared/datasets, beside the project)")
    return NAB_DIR
