"""The four xMGIE modules (docs/modules.md): each a pure function of tensors plus a thin plugin; none imports
another."""
