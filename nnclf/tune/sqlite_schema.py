"""Opening a study's SQLite storage without alembic, when the database is new or already current.

Optuna's ``RDBStorage`` checks and stamps the schema's revision through alembic every time it
is opened. Importing alembic (with its DDL modules for every database dialect) and, on a new
database, loading its migration scripts is most of what opening a storage costs, and it is
paid before the first trial of every ``nnclf tune`` and again in every ``--jobs`` worker
(benchmarks/RESULTS.md, "nnclf tune"). Why not a lighter storage altogether (Optuna's
JournalStorage): it has no heartbeats, and a killed worker's trial must be failed and retried.

So for a SQLite file that is either new or stamped with the installed Optuna's newest revision
(read with the standard library's sqlite3 before SQLAlchemy is involved), the storage is made
by Optuna's own constructor with its revision bookkeeping replaced by ``_NoAlembicVersions``:
the same tables (Optuna's models create them), the same ``version_info`` row, and on a new file
the ``alembic_version`` row alembic itself would write (the head revision), so Optuna, alembic
and ``optuna storage upgrade`` see a database they made. Anything else (an older revision, a
damaged file, an Optuna whose migration scripts do not name one head, another database) takes
Optuna's standard path, with its checks and messages.

The head revision is read from the ``revision = "..."`` / ``down_revision = "..."`` lines of
Optuna's migration scripts, the data alembic reads; ``tests/test_tune_storage.py`` checks it
against alembic's own answer.
"""

from __future__ import annotations

import re
import sqlite3
from functools import lru_cache
from pathlib import Path
from typing import Optional
from urllib.parse import unquote

_REVISION = re.compile(r'^(down_revision|revision)\s*=\s*(?:"([^"]*)"|\'([^\']*)\'|None)\s*$', re.M)


@lru_cache(maxsize=1)
def alembic_head() -> Optional[str]:
    """The newest schema revision of the installed Optuna, or None when its scripts do not
    say it plainly (not exactly one revision that no other revision follows)."""
    try:
        import optuna.storages._rdb as rdb

        versions = Path(rdb.__file__).parent / "alembic" / "versions"
        revisions, parents = set(), set()
        for path in versions.glob("*.py"):
            found = {m.group(1): m.group(2) or m.group(3) for m in _REVISION.finditer(path.read_text(encoding="utf-8"))}
            if "revision" not in found or not found["revision"]:
                return None
            revisions.add(found["revision"])
            if found.get("down_revision"):
                parents.add(found["down_revision"])
    except (ImportError, OSError, UnicodeDecodeError):
        return None
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 and parents <= revisions else None


def sqlite_file(url: str) -> Optional[Path]:
    """The file of a ``sqlite:///PATH`` URL (no query, not in memory), else None."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url:
        return None
    path = unquote(url[len(prefix):])
    if not path or path == ":memory:":
        return None
    return Path(path)


def schema_state(path: Path, head: str) -> str:
    """``new`` (no file, or an empty one), ``current`` (Optuna's tables, stamped ``head``) or
    ``other`` (anything else: the standard path decides what it is)."""
    try:
        if not path.exists() or (path.is_file() and path.stat().st_size == 0 and not _has_wal(path)):
            return "new"
        if not path.is_file():
            return "other"
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            revision = con.execute("SELECT version_num FROM alembic_version").fetchall()
            info = con.execute("SELECT schema_version FROM version_info").fetchall()
        finally:
            con.close()
    except sqlite3.Error:  # no such table, not a database, locked past the timeout
        return "other"
    except OSError:
        return "other"
    if revision == [(head,)] and len(info) == 1:
        return "current"
    return "other"


def _has_wal(path: Path) -> bool:
    return Path(f"{path}-wal").exists()


def open_rdb_storage(url: str, engine_kwargs: dict, **kwargs):
    """``optuna.storages.RDBStorage(url, ...)``, without alembic when ``url`` is a SQLite file
    that is new or current (see the module's docstring); otherwise Optuna's standard path."""
    import optuna

    path = sqlite_file(url)
    head = alembic_head() if path is not None else None
    state = schema_state(path, head) if head is not None else "other"
    try:
        from optuna.storages._rdb import storage as rdb

        standard = rdb._VersionManager
    except (ImportError, AttributeError):
        state = "other"
    if state == "other":
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)

    class _NoAlembicVersions(standard):
        """Optuna's version bookkeeping with alembic's part done in plain SQL: on a new file
        the head revision is stamped as alembic would; a current file needs nothing."""

        def _init_alembic(self) -> None:
            if state != "new":
                return
            import sqlalchemy

            with self.engine.begin() as connection:
                # alembic's table, in the words alembic writes it (sqlite_master keeps the text)
                connection.execute(sqlalchemy.text(
                    "CREATE TABLE IF NOT EXISTS alembic_version (\n\tversion_num VARCHAR(32) NOT NULL, "
                    "\n\tCONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)\n)"))
                connection.execute(sqlalchemy.text(
                    "INSERT INTO alembic_version (version_num) SELECT :head "
                    "WHERE NOT EXISTS (SELECT 1 FROM alembic_version)"), {"head": head})

    # RDBStorage's constructor looks the class up in its module: swapped for this one call
    # (the process opens its storages from one thread)
    rdb._VersionManager = _NoAlembicVersions
    try:
        return optuna.storages.RDBStorage(
            url, engine_kwargs=engine_kwargs, skip_compatibility_check=True, skip_table_creation=state == "current", **kwargs)
    finally:
        rdb._VersionManager = standard

