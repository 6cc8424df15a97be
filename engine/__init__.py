"""aonode.engine."""
