"""Evaluation: `xmgie evaluate`, the training callback and the tables, over the metric suite of `xmgie.metrics`."""
