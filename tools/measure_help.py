"""Measure `datomic-aws --help` start-up time against `python -c "import boto3"`, side by side.

Usage: python tools/measure_help.py [--runs N]
Runs the two in N pairs (default 21), alternating which goes first, after one warm-up of each;
prints the median wall time of each and their ratio (datomic-aws / import boto3).
Importable: tests/bench/run.py uses `measure()`, and `alternate()` for its own paired timings.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def datomic_aws_command() -> list[str]:
    """How to start the `datomic-aws` of this environment (its console script)."""
    script = Path(sys.executable).parent / "datomic-aws"
    if script.exists():
        return [str(script)]
    found = shutil.which("datomic-aws")
    return [found] if found else [sys.executable, "-m", "datomic_aws"]


@dataclass(frozen=True)
class Paired:
    """Wall times (seconds) of two commands run in pairs: `ours[i]` next to `theirs[i]`."""

    ours: tuple[float, ...]
    theirs: tuple[float, ...]

    @property
    def pairs(self) -> int:
        return len(self.ours)

    @property
    def ours_median(self) -> float:
        return statistics.median(self.ours)

    @property
    def theirs_median(self) -> float:
        return statistics.median(self.theirs)

    @property
    def ratio(self) -> float:
        """Median of ours / median of theirs."""
        return self.ours_median / self.theirs_median

    @property
    def pair_ratio(self) -> float:
        """Median of the ratios pair by pair (each pair ran under the same load)."""
        return statistics.median(a / b for a, b in zip(self.ours, self.theirs, strict=True))


def alternate(ours: Callable[[], float], theirs: Callable[[], float], pairs: int) -> Paired:
    """Run `ours` and `theirs` (each returns its wall time) in `pairs` pairs, ours first in even
    pairs and theirs first in odd ones, so that neither always runs on the other's warm caches."""
    a: list[float] = []
    b: list[float] = []
    for i in range(pairs):
        if i % 2 == 0:
            a.append(ours())
            b.append(theirs())
        else:
            b.append(theirs())
            a.append(ours())
    return Paired(tuple(a), tuple(b))


def timed(cmd: list[str]) -> Callable[[], float]:
    """A run of `cmd` (which must succeed) that returns its wall time in seconds."""

    def run() -> float:
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        return time.perf_counter() - start

    return run


@dataclass(frozen=True)
class HelpTiming:
    paired: Paired

    @property
    def runs(self) -> int:
        return self.paired.pairs

    @property
    def help_ms(self) -> float:
        return self.paired.ours_median * 1000

    @property
    def boto_ms(self) -> float:
        return self.paired.theirs_median * 1000

    @property
    def ratio(self) -> float:
        return self.paired.ratio


def measure(runs: int = 21) -> HelpTiming:
    help_run = timed([*datomic_aws_command(), "--help"])
    boto_run = timed([sys.executable, "-c", "import boto3"])
    help_run(), boto_run()  # warm the page cache
    return HelpTiming(alternate(help_run, boto_run, runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="pairs (default 21)")
    args = parser.parse_args()
    t = measure(args.runs)
    print(f"datomic-aws --help       median {t.help_ms:7.1f} ms over {t.runs} paired runs")
    print(f'python -c "import boto3" median {t.boto_ms:7.1f} ms over {t.runs} paired runs')
    print(f"ratio of medians                {t.ratio:7.2f}")
    print(f"median ratio pair by pair       {t.paired.pair_ratio:7.2f}")


if __name__ == "__main__":
    main()
