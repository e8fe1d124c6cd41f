"""nnclf: train neural-network classifiers from YAML configs on CSV data (pure NumPy)."""

__version__ = "0.1.0"

from .errors import NnclfError  # noqa: E402

__all__ = ["NnclfError", "__version__"]
