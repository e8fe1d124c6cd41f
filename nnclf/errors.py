"""The one exception type users see, and how library code hands over a warning."""

from typing import Callable

# library code never prints: it calls ``warn(message)`` (the CLI prints it on stderr, the
# Python API turns it into ``warnings.warn``); messages name the file, line or key like errors
Warn = Callable[[str], None]


class NnclfError(Exception):
    """A problem the user can fix. The CLI prints ``str(error)`` as one line and exits 1.

    Messages name the file, line, key or column and what is wrong, e.g.
    ``configs/iris.yaml, line 5: optimizer.lr: must be a number > 0, got -0.1``.
    """
