"""Side effects shared by the stages: the registry HTTP API, credentials, the Docker Engine."""
