"""Measure `datomic-aws --help` start-up time against `python -c "import boto3"`.

Usage: python tools/measure_help.py [--runs N]
Prints the median wall time of each (N runs, default 21) and their ratio.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _median_ms(cmd: list[str], runs: int) -> float:
    subprocess.run(cmd, check=True, capture_output=True)  # warm the page cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    script = Path(sys.executable).parent / "datomic-aws"
    help_cmd = [str(script)] if script.exists() else [shutil.which("datomic-aws") or "datomic-aws"]
    help_ms = _median_ms([*help_cmd, "--help"], args.runs)
    boto_ms = _median_ms([sys.executable, "-c", "import boto3"], args.runs)
    print(f"datomic-aws --help      median {help_ms:7.1f} ms over {args.runs} runs")
    print(f'python -c "import boto3" median {boto_ms:7.1f} ms over {args.runs} runs')
    print(f"ratio                          {help_ms / boto_ms:7.2f}")


if __name__ == "__main__":
    main()
