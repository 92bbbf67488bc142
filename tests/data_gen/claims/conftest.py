"""Shared helpers for the claims tests."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def run_claims_cli():
    """Runs `python -m data_gen.claims ARGS...` from the repository root, as a user would."""

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "data_gen.claims", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
        )

    return run
