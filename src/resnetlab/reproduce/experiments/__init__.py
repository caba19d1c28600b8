"""The experiments of the four papers; importing this package registers them (in `resnetlab reproduce` order)."""

from resnetlab.reproduce.experiments import batchnorm, identity2016, resnet2015, stochastic_depth  # noqa: F401
