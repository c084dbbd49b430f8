"""The API fuzz (tests/test_api_fuzz.py) at a larger scale: SCALE x 10,000 requests.

Runs the test module under pytest with ``API_FUZZ_SCALE`` set, so the same strategies and the
same checks apply (every answer 200/400/404/422/429 with a JSON detail, no 5xx, no InfluxDB
query for a refused request). Prints ``name: value unit`` lines.
Usage: python bench/api_fuzz.py [SCALE]   (default 10: 100,000 requests)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import figure

ROOT = Path(__file__).resolve().parent.parent
REQUESTS_AT_SCALE_1 = 10_000


def main(argv: list[str]) -> int:
    """Run the fuzz; return pytest's exit code."""
    scale = int(argv[0]) if argv else 10
    env = dict(os.environ, API_FUZZ_SCALE=str(scale))
    started = time.perf_counter()
    result = subprocess.run(  # argv is ours
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_api_fuzz.py"],
        cwd=ROOT,
        env=env,
        check=False,
    )
    elapsed = time.perf_counter() - started
    figure("api_fuzz_requests", scale * REQUESTS_AT_SCALE_1, "requests")
    figure("api_fuzz_failures", 0 if result.returncode == 0 else 1, "runs")
    figure("api_fuzz_duration", elapsed, "s")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
