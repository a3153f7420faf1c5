"""The local control API: HTTP over a unix socket, for the CLI, the web UI and the services."""
