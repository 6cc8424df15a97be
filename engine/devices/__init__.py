"""aonode.engine.devices."""
