"""The cumx engine: model, signal processing, audio I/O and inference.

A quiet library: it never imports typer or rich, never prints and never exits. Errors are
:class:`cumx_cli.engine.errors.CumxError` subclasses whose messages say what to do next.
"""
