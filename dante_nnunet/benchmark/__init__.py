"""One-command benchmark runs (``scripts/run_benchmark.py --config configs/NAME.json``): a
Table-1-style comparison of DANTE against the baselines through the stock nnU-Net commands.

``config``: the config file, checked before any work. ``runner``: the steps (data, plan, split,
Stage 1, train, predict, evaluate), each skipped on a rerun when its output is complete.
``report``: results.json, table.md and the figures, from results only. ``features``: encoder
features of a trained model for the t-SNE. The steps and outputs: ``runner``'s docstring.
"""
from dante_nnunet.benchmark.config import BenchmarkConfigError, load_config, sweep_points
from dante_nnunet.benchmark.report import (GAP_MIN_DICE, bar_chart, build_results, paired_difference,
                                           results_table, summarize_seeds, write_report)
from dante_nnunet.benchmark.runner import Runner, main

__all__ = ["BenchmarkConfigError", "GAP_MIN_DICE", "Runner", "bar_chart", "build_results", "load_config", "main",
           "paired_difference", "results_table", "summarize_seeds", "sweep_points", "write_report"]
