"""Training: learning-rate schedules and, next, the training loop."""
