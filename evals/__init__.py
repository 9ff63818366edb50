"""Evaluation harness: dataset loaders, metrics, the run manager, ablation presets, reports.

Modules are imported on demand (``hoprank.evals.metrics`` etc.) so that loading a dataset
never pulls torch or llama.cpp.
"""
