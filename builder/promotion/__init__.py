"""Stage 12, promote: known-good records in the registry and the friendly tag."""
