"""LightningModules and callbacks of the training stages. Imported lazily: the configs in this package are read
by the editing path, which does not load Lightning."""


def __getattr__(name: str):
    if name == "XMGIEModule":
        from xmgie.training.lit_generator import XMGIEModule

        return XMGIEModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["XMGIEModule"]
