"""Checkpoint formats, one module each: cumx's own ``.pt`` (:mod:`.cumx`), asteroid's X-UMX
package (:mod:`.asteroid`), an Open-Unmix model folder (:mod:`.openunmix`) and Sony's NNabla
parameters (:mod:`.nnabla`), over the shared safe loading of :mod:`.common`.

Which format a path holds is decided by :func:`cumx_cli.engine.weights.resolver.load_model`.
"""
