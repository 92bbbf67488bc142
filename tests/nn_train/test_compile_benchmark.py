"""The compile-time benchmark (make bench) at toy size, so it cannot rot: it compiles both layouts
at each depth and prints the ratio (its figures are the benchmark's business, not a test's)."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.nn_train.hf_oracle import REPO_ROOT


def test_compiles_the_loop_and_the_scan_at_each_depth():
    command = [sys.executable, "-m", "nn_train.compile_benchmark", "--preset=qwen3_tiny", "--layers=1,3",
               "--seq_len=16", "--batch=2"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for layout in ("loop", "scan"):
        assert re.search(rf"^  {layout}\s+1 layers [\d.]+ s, 3 layers [\d.]+ s   3/1 layers: [\d.]+x$", result.stdout, re.M), result.stdout
