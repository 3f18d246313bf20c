"""Stage 3, bases: base images resolved to digests, locked, mirrored."""
