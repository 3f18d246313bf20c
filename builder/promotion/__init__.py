"""Stage 6, promote: known-good records in the registry and the friendly tag."""
