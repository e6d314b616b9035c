"""The front door: Restate's HTTP ingress (port 8080), the admin API (port 9070), and the registry of deployments they both read.

The ingress turns requests into log records (`Invoke`, `Attach`, `Signal`) and
answers from the replies partition leaders send back; the admin API registers
deployments through discovery and appends `Cancel`/`Kill`/`Purge`/`Resume`.
This package imports only `wal` and `protocol` of duro.
"""
