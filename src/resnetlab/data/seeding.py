"""Seeds derived from integers (run seed, epoch, batch or sample index, stream tag), the same in every process.

Every random draw of the pipeline that must survive a resume (data order, augmentation, stochastic-depth
gates) takes its generator from here rather than from global state, so it is a pure function of its position.
"""

from __future__ import annotations

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """A 128-bit seed mixed by numpy's SeedSequence from non-negative integers."""
    if any(int(part) < 0 for part in parts):
        raise ValueError(f"seed parts (seed, epoch, index...) must be >= 0, got {parts}")
    words = np.random.SeedSequence([int(part) for part in parts]).generate_state(4)  # 4 x uint32
    return int.from_bytes(words.tobytes(), "little")


def torch_seed(*parts: int) -> int:
    """`derive_seed` folded into the range torch generators take."""
    return derive_seed(*parts) % 2**63


def seeded_generator(*parts: int, device: str | torch.device = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(torch_seed(*parts))
