"""Evaluation: the metric suite, its backbones and weights, `xmgie evaluate`, the training callback, tables."""
