"""Stage 16, watch: new upstream releases found, pinned, decided and recorded (`builder watch`)."""
