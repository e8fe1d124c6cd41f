"""The one exception type users see."""


class NnclfError(Exception):
    """A problem the user can fix. The CLI prints ``str(error)`` as one line and exits 1.

    Messages name the file, line, key or column and what is wrong, e.g.
    ``configs/iris.yaml: optimizer.lr: must be > 0, got -0.1``.
    """
