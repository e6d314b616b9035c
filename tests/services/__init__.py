"""Service implementations the end-to-end and compatibility tests run against duro (and Restate)."""
