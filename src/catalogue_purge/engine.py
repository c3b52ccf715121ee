"""DuckDB connections and the SQL files of sql/, loaded by name.

Values are always bound as `$name` parameters; identifiers are never pasted into SQL text.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import duckdb

_REPO_SQL = Path(__file__).resolve().parents[2] / "sql"


def connect(
    threads: int | None = None, memory_limit: str | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that never downloads anything (no extension autoload)."""
    config: dict[str, str | bool | int | float | list[str]] = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
    if threads:
        config["threads"] = threads
    if memory_limit:
        config["memory_limit"] = memory_limit
    return duckdb.connect(":memory:", config=config)


@cache
def load_sql(name: str) -> str:
    """The text of sql/<name>.sql (from the installed package, or the source tree)."""
    packaged = resources.files("catalogue_purge").joinpath("_sql", f"{name}.sql")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    path = _REPO_SQL / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"no SQL file named {name!r} in {_REPO_SQL}")
    return path.read_text(encoding="utf-8")
