"""Stage 12, CI: workflows for self-hosted GitHub/Gitea runners."""
