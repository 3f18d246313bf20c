"""Stage 11, promote: known-good records in the registry and the friendly tag."""
