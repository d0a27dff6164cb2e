"""The metric suite: pure functions, the torchmetrics-style accumulator, the networks it scores with (their
weights and provenance), and the tensor conversions between them."""
