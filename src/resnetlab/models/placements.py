"""Where the BN and the ReLUs of a unit sit: the activation placements of He et al. 2016, Table 2 / Fig. 4.

(a) ``original``: relu(x + BN(conv(...)))          (b) ``bn_after_add``: relu(BN(x + conv(...)))
(c) ``relu_before_add``: x + relu(BN(conv(...)))   (d) ``relu_only_preact``: x + BN(conv(relu(...)))
(e) ``full_preact``: x + conv(relu(BN(...))), its own unit classes (`resnetlab.models.preact_blocks`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    """Where the last BN and the ReLUs of a post-activation unit sit (He et al. 2016, Fig. 4 a-d)."""

    relu_on_input: bool  # (d): the branch starts with a ReLU of the unit input
    bn_after_add: bool  # (b): the branch's last BN moves after the addition
    relu_ends_branch: bool  # (c): the last ReLU closes the branch, before the addition
    relu_after_add: bool  # (a), (b): the ReLU after the addition of the ResNet paper


POST_ACTIVATION_PLACEMENTS = {
    "original": Placement(relu_on_input=False, bn_after_add=False, relu_ends_branch=False, relu_after_add=True),
    "bn_after_add": Placement(relu_on_input=False, bn_after_add=True, relu_ends_branch=False, relu_after_add=True),
    "relu_before_add": Placement(relu_on_input=False, bn_after_add=False, relu_ends_branch=True, relu_after_add=False),
    "relu_only_preact": Placement(relu_on_input=True, bn_after_add=False, relu_ends_branch=False, relu_after_add=False),
}
FULL_PREACTIVATION = "full_preact"
ACTIVATION_PLACEMENTS = (*POST_ACTIVATION_PLACEMENTS, FULL_PREACTIVATION)
