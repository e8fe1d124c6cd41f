"""The engine: pure NumPy layers, activations, losses, initialisers, optimizers, schedules.

It knows nothing of files, YAML, pandas or terminals.
"""
