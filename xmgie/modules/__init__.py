"""The four xMGIE modules (DESIGN §5): each a pure function of tensors plus a thin plugin; none imports another."""
