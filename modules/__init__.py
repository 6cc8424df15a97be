"""aonode.modules."""
