from runner.cache.store import EntryKey, Store

__all__ = ["EntryKey", "Store"]
