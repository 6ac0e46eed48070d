"""The separation network: Open-Unmix per-source blocks, optionally bridged (X-UMX)."""

from cumx_cli.engine.model.crossnet import CrossUMX, SourceNet

__all__ = ["CrossUMX", "SourceNet"]
