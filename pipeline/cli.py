"""The ``modelmeter`` command.

Each verb's options are declared here; its work lives in the module named after the stage
(``pipeline.consumer``, ``pipeline.warehouse.cli``, ...; the ``policy`` verbs in
``pipeline.cli_policy``), imported only when the verb runs so that ``modelmeter --help``
stays fast. Every handler has the signature
``run_cli(args: argparse.Namespace, settings: Settings) -> int``.

Errors derived from :class:`pipeline.PipelineError` print one line,
``modelmeter: error: <message>``, and exit with the error's ``exit_code`` (2 for bad usage
or unusable input); no traceback unless ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pipeline._exceptions import PipelineError
from pipeline.safe_text import visible
from pipeline.settings import Settings

__all__ = ["main", "build_parser", "setting_args"]

# verb -> "module:function"
HANDLERS = {
    "simulate": "pipeline.simulate.cli:run_cli",
    "consume": "pipeline.consumer:run_cli",
    "build": "pipeline.warehouse.cli:run_cli",
    "compact": "pipeline.compaction:run_cli",
    "alerts": "pipeline.alerts:run_cli",
    "report": "pipeline.report:run_cli",
    "dq": "pipeline.dq:run_cli",
    "policy check": "pipeline.cli_policy:run_check_cli",
    "policy route": "pipeline.cli_policy:run_route_cli",
    "policy diff": "pipeline.cli_policy:run_diff_cli",
    "collect claude-code": "pipeline.collect.cli:run_claude_code_cli",
    "collect http": "pipeline.collect.http_server:run_http_cli",
}

# CLI option -> Settings field; every verb takes these. No option for the SASL password (a
# command line shows in `ps`), nor for its file (`--sasl-password VALUE`, from older docs,
# would then be taken as an abbreviation of it): KAFKA_SASL_PASSWORD or
# KAFKA_SASL_PASSWORD_FILE in the environment.
SETTING_OPTIONS = {
    "--bootstrap-servers": (
        "kafka_bootstrap_servers",
        "Kafka bootstrap servers (KAFKA_BOOTSTRAP_SERVERS)",
    ),
    "--security-protocol": (
        "kafka_security_protocol",
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (KAFKA_SECURITY_PROTOCOL)",
    ),
    "--sasl-mechanism": (
        "kafka_sasl_mechanism",
        "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (KAFKA_SASL_MECHANISM)",
    ),
    "--sasl-username": (
        "kafka_sasl_username",
        "SASL user name (KAFKA_SASL_USERNAME); the password comes from KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE, never from the command line",
    ),
    "--ssl-cafile": (
        "kafka_ssl_cafile",
        "CA certificate file that signed the broker's certificate (KAFKA_SSL_CAFILE)",
    ),
    "--kafka-client": (
        "kafka_client",
        "Kafka client: confluent (librdkafka) or kafka-python (MODELMETER_KAFKA_CLIENT, default confluent)",
    ),
    "--topic": ("topic", "usage-event topic (MODELMETER_TOPIC, default agent-usage)"),
    "--lake": ("lake", "Parquet lake directory (MODELMETER_LAKE, default data/lake)"),
    "--warehouse": (
        "warehouse",
        "DuckDB warehouse file (MODELMETER_WAREHOUSE, default data/warehouse.duckdb)",
    ),
    "--policy": (
        "policy",
        "routing policy YAML (MODELMETER_POLICY, default schemas/routing_policy.yaml)",
    ),
    "--prices": ("prices", "price book CSV (MODELMETER_PRICES, default schemas/prices.csv)"),
    "--models": ("models", "model catalogue (MODELMETER_MODELS, default schemas/models.yaml)"),
    "--budgets": ("budgets", "monthly budgets (MODELMETER_BUDGETS, default schemas/budgets.yaml)"),
    "--bootstrap-timeout": (
        "kafka_bootstrap_timeout",
        "seconds to reach Kafka at start before exit 2 (MODELMETER_BOOTSTRAP_TIMEOUT, default 30)",
    ),
    "--log-format": (
        "log_format",
        "text or json: one JSON object per log line (MODELMETER_LOG_FORMAT, default text)",
    ),
}


def setting_args(settings: Settings, *fields: str) -> list[str]:
    """The command-line options that give a child ``modelmeter`` process these ``settings``:
    ``fields`` (Settings names, e.g. ``"lake"``), or by default the Kafka address and topic and
    every input and output path."""
    wanted = fields or (
        "kafka_bootstrap_servers",
        "topic",
        "lake",
        "warehouse",
        "policy",
        "prices",
        "models",
        "budgets",
    )
    by_field = {field: option for option, (field, _) in SETTING_OPTIONS.items()}
    args: list[str] = []
    for field in wanted:
        value = getattr(settings, field)
        if value is not None:
            args += [by_field[field], str(value)]
    return args


def _settings_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("settings (override the environment)")
    for option, (field, help_text) in SETTING_OPTIONS.items():
        group.add_argument(
            option, dest=f"setting_{field}", metavar=field.split("_")[-1].upper(), help=help_text
        )
    parent.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return parent


def build_parser() -> argparse.ArgumentParser:
    common = _settings_parent()
    parser = argparse.ArgumentParser(
        prog="modelmeter",
        description="Usage analytics for hybrid LLM routing: Kafka -> Parquet lake -> DuckDB.",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    p = verbs.add_parser(
        "simulate", parents=[common], help="produce simulated agent traffic to Kafka"
    )
    p.add_argument("--events", type=int, required=True, help="number of usage events to produce")
    p.add_argument(
        "--days", type=int, default=30, help="days the traffic is spread over (default 30)"
    )
    p.add_argument("--end-date", help="last day of traffic, YYYY-MM-DD (default yesterday UTC)")
    p.add_argument("--seed", type=int, default=42, help="random seed (same seed, same events)")
    p.add_argument(
        "--bad-fraction", type=float, default=0.0, help="share of raw bad messages added"
    )
    p.add_argument(
        "--duplicate-fraction",
        type=float,
        default=0.0,
        help="share of events sent twice (producer retries, same event_id)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--summary-json",
        metavar="PATH",
        help="write the run's counts and token totals as JSON to PATH",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="producer processes (default: one per 40k events, at most the CPUs)",
    )

    p = verbs.add_parser("consume", parents=[common], help="Kafka -> validated Parquet lake")
    p.add_argument(
        "--until-idle",
        type=float,
        metavar="SECONDS",
        help="stop after SECONDS without new messages, once the broker confirms "
        "that nothing is left to read",
    )
    p.add_argument("--max-events", type=int, metavar="N", help="stop after N messages")
    p.add_argument(
        "--group", default="modelmeter-lake", help="consumer group (default modelmeter-lake)"
    )
    p.add_argument(
        "--instance-id",
        metavar="ID",
        help="static group membership (one ID per consumer, e.g. the host name): a "
        "restarted consumer takes its partitions back at once instead of after "
        "the session timeout",
    )
    p.add_argument(
        "--flush-events",
        type=int,
        default=50_000,
        help="flush a partition's buffer at this many messages (default 50000)",
    )
    p.add_argument(
        "--flush-seconds",
        type=float,
        default=10.0,
        help="flush buffers at least this often (default 10 s)",
    )
    p.add_argument(
        "--progress-seconds",
        type=float,
        default=5.0,
        help="progress line interval (default 5 s; 0 = off)",
    )
    p.add_argument(
        "--metrics-port",
        dest="setting_metrics_port",
        type=int,
        metavar="PORT",
        help="serve Prometheus /metrics and /healthz on PORT (MODELMETER_METRICS_PORT;"
        " default off; 0 = any free port)",
    )
    p.add_argument(
        "--metrics-host",
        dest="setting_metrics_host",
        metavar="HOST",
        help="address of the metrics endpoint (MODELMETER_METRICS_HOST, default 127.0.0.1)",
    )
    p.add_argument(
        "--health-max-commit-age",
        dest="setting_health_max_commit_age",
        type=float,
        metavar="SECONDS",
        help="/healthz fails when there is lag and no commit for SECONDS"
        " (MODELMETER_HEALTH_MAX_COMMIT_AGE, default 300)",
    )

    p = verbs.add_parser("build", parents=[common], help="(re)build the warehouse from the lake")
    p.add_argument(
        "--if-stale",
        action="store_true",
        help="skip when the warehouse is newer than every lake file, the price book and the policy",
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="rebuild everything from the lake (default: only changed event_date "
        "partitions when the price book, policy and models are unchanged)",
    )

    p = verbs.add_parser(
        "compact", parents=[common], help="rewrite the lake's closed days into few files"
    )
    p.add_argument("--before", metavar="DATE", help="only days before DATE (YYYY-MM-DD)")
    p.add_argument(
        "--settle-hours",
        type=float,
        default=2.0,
        help="a day is closed this long after its end, a file this long after it was written"
        " (default 2)",
    )
    p.add_argument(
        "--target-mb", type=float, default=128, help="input size a compacted file stops at"
    )

    p = verbs.add_parser(
        "alerts",
        parents=[common],
        help="budgets, KPIs and data warnings that need attention (exit 1 when any)",
    )
    p.add_argument("--date", help="YYYY-MM-DD (default yesterday UTC)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument(
        "--only", metavar="KINDS", help="comma-separated among budget, kpi, data (default all)"
    )

    p = verbs.add_parser("report", parents=[common], help="the daily report")
    p.add_argument("--date", help="YYYY-MM-DD (default yesterday UTC)")
    p.add_argument("--format", choices=["text", "markdown", "html", "json"], default="text")
    p.add_argument("--output", metavar="PATH", help="write to PATH instead of standard output")

    p = verbs.add_parser(
        "dq", parents=[common], help="data-quality checks (exit 0 pass, 1 fail, 2 cannot run)"
    )
    p.add_argument("--date", help="YYYY-MM-DD (default yesterday UTC)")
    p.add_argument(
        "--output",
        metavar="PATH",
        help="JSON result file (default <lake parent>/dq/dq-<date>.json; <warehouse parent>/dq/"
        " for a lake in a bucket)",
    )
    p.add_argument(
        "--data-docs",
        metavar="DIR",
        help="great-expectations HTML data docs directory (default <lake parent>/dq/data_docs;"
        " <warehouse parent>/dq/data_docs for a lake in a bucket)",
    )
    p.add_argument("--no-data-docs", action="store_true", help="do not build the HTML data docs")
    p.add_argument(
        "--dq-config",
        metavar="PATH",
        help="thresholds and expectation suites (default schemas/dq.yaml)",
    )

    p = verbs.add_parser("policy", help="routing policy: check it, or show a routing decision")
    policy_verbs = p.add_subparsers(dest="policy_verb", metavar="ACTION", required=True)
    q = policy_verbs.add_parser("check", parents=[common], help="validate a policy file")
    q.add_argument("path", nargs="?", help="policy file (default: the configured policy)")
    q = policy_verbs.add_parser(
        "route", parents=[common], help="show the routing decision for a task"
    )
    q.add_argument("--role", required=True)
    q.add_argument(
        "--signal",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a task signal, e.g. services_affected=3 or security_sensitive=true",
    )
    q.add_argument("--task-id", help="the task: a canary assigns its version by task id")
    q.add_argument("--date", help="the task's UTC day, YYYY-MM-DD (default today)")
    q = policy_verbs.add_parser(
        "diff", parents=[common], help="print what changed between two policy files"
    )
    q.add_argument("path_a", metavar="A", help="the old policy file")
    q.add_argument("path_b", metavar="B", help="the new policy file")

    p = verbs.add_parser("collect", help="collect usage that other tools record, to Kafka")
    collect_verbs = p.add_subparsers(dest="collect_verb", metavar="SOURCE", required=True)
    q = collect_verbs.add_parser(
        "claude-code",
        parents=[common],
        help="Claude Code session transcripts, each API call once",
    )
    q.add_argument(
        "--path",
        action="append",
        metavar="DIR",
        help="transcript directory, repeatable (default ~/.claude/projects)",
    )
    q.add_argument("--follow", action="store_true", help="after the backfill, send new calls")
    q.add_argument(
        "--sources", metavar="PATH", help="source mapping file (default schemas/sources.yaml)"
    )
    q.add_argument(
        "--state",
        metavar="PATH",
        help="checkpoint file (default ~/.local/state/modelmeter/claude-code-checkpoints.json)",
    )
    q.add_argument(
        "--settle-seconds",
        type=float,
        default=5.0,
        help="a file's last call is sent once the file was idle this long (default 5)",
    )
    q.add_argument("--no-progress", action="store_true", help="no progress line")
    q = collect_verbs.add_parser(
        "http",
        parents=[common],
        help="an HTTP endpoint for OpenTelemetry (OTLP/HTTP), LiteLLM and contract events",
    )
    q.add_argument(
        "--listen",
        default="127.0.0.1:4318",
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1:4318, the OTLP/HTTP port; port 0: any)",
    )
    q.add_argument(
        "--sources", metavar="PATH", help="source mapping file (default schemas/sources.yaml)"
    )
    q.add_argument(
        "--max-body-mb",
        type=float,
        default=16.0,
        help="largest request body, after gzip (default 16 MB; larger: 413)",
    )
    q.add_argument(
        "--flush-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the broker's acknowledgement before answering 503 (default 10)",
    )
    q.add_argument("--port-file", metavar="PATH", help="write the bound port to PATH")
    return parser


def _settings_from(args: argparse.Namespace) -> Settings:
    overrides = {
        k.removeprefix("setting_"): v
        for k, v in vars(args).items()
        if k.startswith("setting_") and v is not None
    }
    return Settings(**overrides)


def _handler(args: argparse.Namespace):
    key = args.verb
    if args.verb == "policy":
        key = f"policy {args.policy_verb}"
    elif args.verb == "collect":
        key = f"collect {args.collect_verb}"
    module_name, func = HANDLERS[key].split(":")
    return getattr(importlib.import_module(module_name), func)


def _refuse_password_option(argv: Sequence[str]) -> None:
    """``--sasl-password VALUE`` (an option of older releases): exit 2 naming the variables
    to use instead, without echoing the value as argparse's "unrecognized arguments" would."""
    for arg in argv:
        if arg == "--":
            return
        if arg == "--sasl-password" or arg.startswith("--sasl-password="):
            print(
                "modelmeter: error: --sasl-password is not an option (a command line shows in"
                " `ps`): set KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE in the"
                " environment",
                file=sys.stderr,
            )
            raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> int:
    _refuse_password_option(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        settings = _settings_from(args)
        from pipeline.logs import configure_logging

        configure_logging(settings)
        return int(_handler(args)(args, settings) or 0)
    except PipelineError as exc:
        if getattr(args, "debug", False):
            raise
        print(f"modelmeter: error: {visible(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a pydantic ValidationError from settings, for instance
        if getattr(args, "debug", False):
            raise
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            print(
                visible(
                    f"modelmeter: error: setting {'.'.join(map(str, first['loc']))}: {first['msg']}"
                ),
                file=sys.stderr,
            )
            return 2
        print(
            visible(
                f"modelmeter: internal error: {type(exc).__name__}: {exc} (rerun with --debug)"
            ),
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
