"""aonode.engine.store: the only package that knows where bytes live."""
from aonode.engine.store.base import Assignment, Store
from aonode.engine.store.sqlite import SQLiteStore

__all__ = ["Assignment", "SQLiteStore", "Store"]
