"""Inference: chunk planning (``chunking``), the batched separator (``separator``), and the
streaming file pipeline (``pipeline``) with its inputs (``inputs``), output naming and clip policy
(``outputs``) and scratch storage (``scratch``)."""
