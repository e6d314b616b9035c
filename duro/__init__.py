"""The `duro` command and its process wiring: settings, the CLI, and the roles (ingress, admin, partition workers) of one node."""

__version__ = "0.1.0"
