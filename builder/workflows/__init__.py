"""Stage 13, CI: workflows for self-hosted GitHub/Gitea runners."""
