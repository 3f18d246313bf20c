"""Side effects shared by stages 4-6: the registry HTTP API, credentials, the Docker Engine."""
