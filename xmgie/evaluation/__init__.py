"""Evaluation: metrics, and (with the evaluation issue) backbones, callbacks and tables."""
