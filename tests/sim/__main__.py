"""Run the partition simulator from the command line: `python -m tests.sim [--seeds N] [--first S] [--seed S] [--verbose]`.

`--seed S` replays one seed exactly (the one a failure printed); `--seeds N`
runs N seeds from `--first` and stops at the first violation, printing its
seed and the command that replays it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from tests.sim.simulation import InvariantViolation, replay_command, run_seed


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__)
    parser.add_argument("--seed", type=int, help="run this one seed")
    parser.add_argument("--seeds", type=int, default=1000, help="how many seeds to run (default 1000)")
    parser.add_argument("--first", type=int, default=0, help="the first seed of the range")
    parser.add_argument("--verbose", action="store_true", help="log what the runtime does (warnings and up)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.CRITICAL + 1, format="%(levelname)s %(name)s: %(message)s")
    seeds = [args.seed] if args.seed is not None else range(args.first, args.first + args.seeds)
    started = time.perf_counter()
    records = 0
    for count, seed in enumerate(seeds, 1):
        try:
            report = run_seed(seed)
        except InvariantViolation as violation:
            print(f"FAILED seed {seed}: {violation}\nreplay: {replay_command(seed)}", file=sys.stderr)
            return 1
        records += report.records
        if args.seed is not None or args.verbose:
            print(f"seed {seed}: {report.invocations} invocations, {report.records} records, {report.virtual_s:.1f} virtual s,"
                  f" faults {report.faults}, digest {report.digest[:16]}")  # fmt: skip
        elif count % 100 == 0:
            print(f"{count} seeds, {records} records, {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print(f"{len(seeds)} seeds passed ({records} records) in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
