"""The `duro` command line: `duro serve` and `duro version`.

Flags override `DURO_*` environment variables, which override defaults.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from duro import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="duro", description="A durable-execution runtime for Restate SDK services.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run a node: ingress, admin API and partition workers")
    serve.add_argument("--data-dir", help="data directory (DURO_DATA_DIR, default ./duro-data)")
    serve.add_argument("--bind", help="listen address (DURO_BIND, default 127.0.0.1)")
    serve.add_argument("--admin-bind", help="listen address of the admin API (DURO_ADMIN_BIND, default: --bind)")
    serve.add_argument("--ingress-port", type=int, help="ingress port (DURO_INGRESS_PORT, default 8080)")
    serve.add_argument("--admin-port", type=int, help="admin API port (DURO_ADMIN_PORT, default 9070)")
    serve.add_argument("--partitions", type=int, help="partition count, fixed at creation (DURO_PARTITIONS, default 24)")
    serve.add_argument("--node-id", type=int, help="node id (DURO_NODE_ID, default 1)")
    serve.add_argument(
        "--workers",
        type=int,
        help="worker processes, each running a share of the partitions (DURO_WORKERS; default: the data dir's, or the number of cores)",
    )
    serve.add_argument("--config", type=Path, help="TOML config file with the same keys as the DURO_ variables, lower case")
    serve.add_argument("--log", choices=["embedded", "kafka"], help="log backend (DURO_LOG, default embedded)")
    serve.add_argument("--kafka-bootstrap", help="Kafka bootstrap servers HOST:PORT (DURO_KAFKA_BOOTSTRAP)")
    serve.add_argument("--kafka-topic", help="Kafka log topic (DURO_KAFKA_TOPIC, default duro.log)")
    serve.add_argument("--advertised-host", help="host other nodes use to reach this node (DURO_ADVERTISED_HOST, default --bind)")
    serve.add_argument("--log-level", help="logging level (DURO_LOG_LEVEL, default info)")
    serve.add_argument("--log-format", choices=["text", "json"], help="log lines as text or JSON (DURO_LOG_FORMAT, default text)")
    serve.add_argument("--max-protocol-version", type=int, choices=[5, 6, 7], help="highest service protocol version offered (default 6)")
    serve.add_argument(
        "--truncate-corrupt-tail",
        action="store_true",
        default=None,
        help="cut the embedded log at a damaged frame instead of refusing to start, losing every entry after it (logged)",
    )
    commands.add_parser("version", help="print the version")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = [
        "data_dir",
        "bind",
        "admin_bind",
        "ingress_port",
        "admin_port",
        "partitions",
        "node_id",
        "workers",
        "log",
        "log_level",
        "log_format",
        "kafka_bootstrap",
        "kafka_topic",
        "advertised_host",
        "truncate_corrupt_tail",
    ]
    overrides = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if getattr(args, "max_protocol_version", None) is not None:
        overrides["invoker"] = {"max_protocol_version": args.max_protocol_version}
    return overrides


def _env_config() -> Path | None:
    value = os.environ.get("DURO_CONFIG")
    return Path(value) if value else None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"duro {__version__}")
        return 0
    from duro.settings import SettingsFileError, load_settings

    try:
        settings = load_settings(args.config or _env_config(), _overrides(args))
    except (ValidationError, SettingsFileError) as exc:
        print(f"duro: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    from duro.node import NodeFailure, NodeStartError, run_node

    try:
        return run_node(settings)
    except (NodeStartError, NodeFailure) as exc:
        print(f"duro: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
