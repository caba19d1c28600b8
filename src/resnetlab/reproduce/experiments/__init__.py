"""The experiments of the four papers; importing this package registers them, in the papers' order (the order
`resnetlab reproduce --list` shows)."""

from importlib import import_module

PAPER_MODULES = ("resnet2015", "identity2016", "stochastic_depth", "batchnorm")

for _module in PAPER_MODULES:
    import_module(f"{__name__}.{_module}")
