#!/usr/bin/env python
"""One-command benchmark: python scripts/run_benchmark.py --config configs/NAME.json [--sweep] [--tsne]
(see dante_nnunet/benchmark/runner.py for the steps and outputs)."""
import sys

from dante_nnunet.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
