"""Model files and published weights: the checkpoint formats (``formats/``), the resolver from a
name or path to a model, the registry of published models, the cache, and downloads."""
