"""Training: the loop, checkpoints and resuming, one run from config to published record, tracking."""
