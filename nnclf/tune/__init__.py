"""``nnclf tune``: hyperparameter search over the YAML config, on Optuna.

``space`` (the ``tune:`` section, checked without Optuna), ``study`` (trials, storage, workers;
needs the ``tune`` extra), ``display`` (the live table), ``report`` (the study's HTML report).
Importing this package imports nothing heavy.
"""
