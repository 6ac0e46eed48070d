"""Training data: MUSDB18(-HQ) tracks, random-mix excerpts with augmentation, synthetic data."""
