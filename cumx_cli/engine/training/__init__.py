"""Training: input statistics, the epoch loop (single process or DDP), checkpoints, metrics."""
