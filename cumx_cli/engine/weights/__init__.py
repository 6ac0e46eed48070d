"""Published weights: the model registry, the cache, downloads, and the NNabla converter."""
