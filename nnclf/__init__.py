"""nnclf: train neural-network classifiers from YAML configs on CSV data (pure NumPy).

The Python API (``Classifier``, ``Regressor``, ``Autoencoder``, ``load``, ``train``) is imported on first use, so
``import nnclf`` stays light (the CLI starts without pandas, pydantic or scikit-learn).
"""

__version__ = "0.1.0"

from .errors import NnclfError  # noqa: E402

__all__ = ["Autoencoder", "Classifier", "Model", "NnclfError", "NotFittedError", "Regressor", "load", "train", "__version__"]

_LAZY = {"Classifier": "estimators", "Regressor": "estimators", "Autoencoder": "estimators", "NotFittedError": "estimators", "load": "api", "train": "api", "Model": "api"}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nnclf' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_LAZY])
