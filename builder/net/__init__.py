"""The one network layer every HTTP peer goes through (engine servers, registries, token services):
connect, per-read and whole-request deadlines, a cap on every body, one-line redacted reasons."""
