"""What exact float parsing costs on pandas before 3 (nnclf.data.reading._exact_floats): a CSV of
random normal floats (repr, 17 significant digits) read by pandas.read_csv with its default parser
and with float_precision="round_trip", and by nnclf's whole-table reader, in interleaved rounds;
medians of the wall times. On pandas 3 the two pandas rows are the same parser.

    PYTHONPATH=$PWD python benchmarks/float_parse_bench.py [--rows 200000] [--cols 10] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    from nnclf.data.reading import ReadOptions, read_table

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--cols", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # pandas 3 deprecates float_precision
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "floats.csv"
        frame = pd.DataFrame(np.random.default_rng(0).standard_normal((args.rows, args.cols)), columns=[f"x{i}" for i in range(args.cols)])
        frame["label"] = "a"
        frame.to_csv(path, index=False)
        ways = {
            "pandas.read_csv, default parser": lambda: pd.read_csv(path),
            "pandas.read_csv, float_precision='round_trip'": lambda: pd.read_csv(path, float_precision="round_trip"),
            "nnclf read_table": lambda: read_table(path, options=ReadOptions(target="label", delimiter=",")),
        }
        times = {name: [] for name in ways}
        for r in range(args.rounds):
            for name in (ways if r % 2 == 0 else reversed(list(ways))):
                start = time.perf_counter()
                ways[name]()
                times[name].append(time.perf_counter() - start)
        print(f"pandas {pd.__version__}, {args.rows} x {args.cols} floats ({path.stat().st_size / 2**20:.0f} MB), medians of {args.rounds}:")
        for name, got in times.items():
            print(f"  {name}: {statistics.median(got):.3f} s")


if __name__ == "__main__":
    main()
