"""Audio I/O: decoding, encoding, resampling and channel handling (the only soundfile user)."""
