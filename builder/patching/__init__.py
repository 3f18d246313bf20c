"""Stage 2, patch: patch records, engine sources, verdicts against the real source."""
