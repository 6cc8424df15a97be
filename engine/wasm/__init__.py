"""aonode.engine.wasm."""
