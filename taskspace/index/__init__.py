"""The DuckDB index: every run, score and similarity, keyed by run metadata — derived from the stage outputs.

`schema` (tables, version, read-only opening), `build` (the one writer), `read` (`Index`, every query).
"""

from taskspace.index.build import build_index, insert, load_analysis, similarity_rows
from taskspace.index.read import Index, load_space
from taskspace.index.schema import SCHEMA, SCHEMA_VERSION, TABLES, IndexUnavailable, connect_readonly

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "TABLES",
    "Index",
    "IndexUnavailable",
    "build_index",
    "connect_readonly",
    "insert",
    "load_analysis",
    "load_space",
    "similarity_rows",
]
