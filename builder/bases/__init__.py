"""Base images: resolved to digests, locked, mirrored (stage between patching and render)."""
