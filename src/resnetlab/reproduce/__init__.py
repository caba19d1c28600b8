"""Reproductions of the papers' experiments: each experiment is data (`experiment`), run at a budget
(`budgets`, `runner`) and written up from its records (`results`, `report`, `figures`)."""

from resnetlab.reproduce import experiments as _experiments  # noqa: F401  (registers the experiments)
