"""Training: the loop, checkpoints, and the bookkeeping of a run."""
