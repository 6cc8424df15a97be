"""aonode.engine.store."""
