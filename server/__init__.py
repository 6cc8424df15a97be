"""aonode.server."""
