"""The experiments of the four papers: each module lists its paper's (``EXPERIMENTS``), and importing this
package registers them in the papers' order (the order `resnetlab reproduce --list` shows)."""

from resnetlab.reproduce.experiment import register_experiment
from resnetlab.reproduce.experiments import batchnorm, identity2016, resnet2015, stochastic_depth, warmup_pilot

PAPER_MODULES = (resnet2015, identity2016, stochastic_depth, batchnorm, warmup_pilot)  # the papers' order, then
# the pilot behind the cpu budgets

for _module in PAPER_MODULES:
    for _experiment in _module.EXPERIMENTS:
        register_experiment(_experiment)
