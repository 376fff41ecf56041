"""Evaluation (notebook 07): comparisons of methods on held-out cases (``compare``), the paper's
published tables (``paper``), written tables and figures (``outputs``), the whole
reproduction (``reproduce``) and the classical baseline (``baselines``).
"""
