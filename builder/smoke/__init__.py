"""Stage 8, smoke: boot an engine image with a tiny model and check the live server's answers."""
