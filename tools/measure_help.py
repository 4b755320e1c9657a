"""Measure `datomic-aws --help` start-up time against `python -c "import boto3"`.

Usage: python tools/measure_help.py [--runs N]
Prints the median wall time of each (N runs, default 21) and their ratio.
Importable: tests/bench/run.py uses `measure()`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


def datomic_aws_command() -> list[str]:
    """How to start the `datomic-aws` of this environment (its console script)."""
    script = Path(sys.executable).parent / "datomic-aws"
    if script.exists():
        return [str(script)]
    found = shutil.which("datomic-aws")
    return [found] if found else [sys.executable, "-m", "datomic_aws"]


def median_ms(cmd: list[str], runs: int) -> float:
    """Median wall time of `cmd` in milliseconds over `runs` runs, after one warm-up run."""
    subprocess.run(cmd, check=True, capture_output=True)  # warm the page cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


@dataclass(frozen=True)
class HelpTiming:
    runs: int
    help_ms: float
    boto_ms: float

    @property
    def ratio(self) -> float:
        return self.help_ms / self.boto_ms


def measure(runs: int = 21) -> HelpTiming:
    help_ms = median_ms([*datomic_aws_command(), "--help"], runs)
    boto_ms = median_ms([sys.executable, "-c", "import boto3"], runs)
    return HelpTiming(runs, help_ms, boto_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    t = measure(args.runs)
    print(f"datomic-aws --help      median {t.help_ms:7.1f} ms over {t.runs} runs")
    print(f'python -c "import boto3" median {t.boto_ms:7.1f} ms over {t.runs} runs')
    print(f"ratio                          {t.ratio:7.2f}")


if __name__ == "__main__":
    main()
