"""Inference: chunk planning, the batched separator and the streaming file pipeline."""
