#!/usr/bin/env python
"""The share of the headroom each teacher recipe of a benchmark keeps (issue 46):
python scripts/headroom.py RESULTS_JSON [--lower lower] [--more lower_4x] [--region "enhancing tumor"]
(dante_nnunet/benchmark/headroom.py says what is computed)."""
import argparse
import json
import sys

from dante_nnunet.benchmark.headroom import headroom_rows, headroom_table


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("results")
    p.add_argument("--lower", default="lower")
    p.add_argument("--more", default="lower_4x", help="the lower bound on more labelled cases")
    p.add_argument("--region", default="enhancing tumor")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    a = p.parse_args()
    with open(a.results) as fh:
        rows = headroom_rows(json.load(fh), a.lower, a.more, a.region)
    print(json.dumps(rows, indent=1) if a.json else headroom_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
