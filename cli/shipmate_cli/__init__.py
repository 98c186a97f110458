"""The `shipmate` command: Shipmate's /api/v1/ from a terminal."""
