"""Stage 7, CI: workflows for self-hosted GitHub/Gitea runners."""
