#!/usr/bin/env python
"""The teach gate's A/A false-accept rate and power (issue 47; dante_nnunet/benchmark/gate_calibration.py).

    python scripts/gate_calibration.py collect RESULTS/gate_aa_partial --design phantom_partial
    python scripts/gate_calibration.py analyse [--out docs/results/gate_calibration.json]

collect: per-case validation Dice of each seed's plain model of a gate_aa_* benchmark run into
docs/results/gate/aa_<design>_seed<s>.json; analyse: every rule on every committed comparison."""
import argparse
import sys

from batchgenerators.utilities.file_and_folder_operations import save_json

from dante_nnunet.benchmark.gate_calibration import analyse, collect, markdown

GATE_DIR = "docs/results/gate"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("run_root")
    c.add_argument("--design", required=True, help="the design whose committed gate runs share these cases")
    c.add_argument("--gate-dir", default=GATE_DIR)
    a = sub.add_parser("analyse")
    a.add_argument("--gate-dir", default=GATE_DIR)
    a.add_argument("--out", default=None, help="write the result as JSON here")
    args = p.parse_args(argv)
    if args.cmd == "collect":
        for path in collect(args.run_root, args.design, args.gate_dir):
            print("wrote", path)
        return 0
    result = analyse(args.gate_dir)
    print(markdown(result))
    if args.out:
        save_json(result, args.out, sort_keys=False)
        print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
