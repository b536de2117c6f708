"""``watcher`` / ``python -m watcher``: parse arguments, load config, configure logging,
run. Exit codes: 0 done, 1 runtime failure, 2 usage or config error."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from watcher import __version__

EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool its reader left


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watcher", description="Keeps watch over Mistral AI jobs and tells people."
    )
    parser.add_argument("--version", action="version", version=f"watcher {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(name: str, help_text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument(
            "-c",
            "--config",
            help="config file (else $WATCHER_CONFIG, else /etc/watcher/config.yaml)",
        )
        return cmd

    with_config("run", "the daemon: poll, diff, deliver until SIGTERM/SIGINT")
    with_config("once", "one poll + delivery pass, then exit")
    with_config("check-config", "validate the config, print a summary, exit 0 or 2")
    status = with_config(
        "status", "tracked jobs, last poll per source, pending and dead deliveries"
    )
    _output(status)
    with_config("migrate", "bring the state database's schema up to date (run does it too)")
    test_sink = with_config("test-sink", "send a labelled test message through one sink")
    test_sink.add_argument("sink", metavar="NAME")
    render = with_config("render", "print what a sink would send for a sample transition")
    render.add_argument("--sink", required=True, metavar="NAME")
    render.add_argument("--sample", default="failed", help="failed, success, stalled, …")
    render.add_argument(
        "--format",
        choices=["all", "html"],
        default="all",
        help="all: every part and the sink's message; html: the email's HTML alone",
    )
    render.add_argument("-o", "--out", metavar="FILE", help="write to FILE instead of stdout")
    deliveries = with_config("deliveries", "list deliveries, or put dead ones back in the queue")
    deliveries.add_argument("--state", choices=["pending", "delivered", "dead", "silenced"])
    deliveries.add_argument("--limit", type=int, default=50)
    deliveries.add_argument("action", nargs="?", choices=["retry"], help="retry dead ones")
    deliveries.add_argument("id", nargs="?", metavar="ID", help="transition id to retry")
    deliveries.add_argument("--all-dead", action="store_true", help="with retry: every one")
    _output(deliveries)
    routes = with_config("routes", "routing tools")
    routes.add_argument("action", choices=["explain"])
    routes.add_argument(
        "transition",
        metavar="FILE_OR_JSON",
        help="a webhook payload or transition, as a file or inline JSON",
    )
    cancel = with_config("cancel", "ask a source's API to cancel a job (audited)")
    cancel.add_argument("source", metavar="SOURCE")
    cancel.add_argument("job_id", metavar="JOB_ID")
    cancel.add_argument("--by", metavar="NAME", help="who asks (default: the OS user)")
    ack = with_config("ack", "acknowledge a job's open alerts: no more repeats (audited)")
    ack.add_argument("job_id", metavar="JOB_ID")
    ack.add_argument("--source", metavar="NAME", help="only this source's alerts")
    ack.add_argument("--by", metavar="NAME", help="who acknowledges (default: the OS user)")

    _silence_parser(sub)

    schema = sub.add_parser("schema", help="JSON Schema of the config file or of the events")
    schema.add_argument("what", choices=["config", "events"])
    completion = sub.add_parser(
        "completion",
        help='shell completion script: eval "$(watcher completion bash)"',
        description="print a completion script for bash or zsh (see the README)",
    )
    completion.add_argument("shell", choices=["bash", "zsh"])
    receive = sub.add_parser(
        "receive",
        help="a signature-checking webhook receiver (for trying sinks; prints its URL)",
        description='a Standard Webhooks receiver on loopback: prints {"url": …} (and a '
        "generated secret unless $WATCHER_RECEIVER_SECRET is set) as one JSON line; "
        "GET /_received lists what arrived",
    )
    receive.add_argument("--host", default="127.0.0.1")
    receive.add_argument("--port", type=int, default=0, help="default: any free port")

    sim = sub.add_parser("simulate", help="the built-in Mistral API simulator alone")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8765)
    sim.add_argument("--scenario", help="scenario YAML (default: no jobs; add them via /_sim)")
    sim.add_argument("--speed", type=float, default=1.0, help="time factor (2 = twice as fast)")
    sim.add_argument("--seed", type=int, help="seeded random jobs instead of a scenario")
    sim.add_argument("--api-key", default="sim-key", help="the key clients must send")

    demo = sub.add_parser("demo", help="simulator + watcher + receiver on loopback, ~20 s")
    demo.add_argument("--speed", type=float, default=1.0)
    demo.add_argument("--timeout", type=float, default=90.0)
    return parser


def _output(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "-o",
        "--output",
        choices=["table", "json"],
        default="table",
        help="table for people, json for scripts",
    )


def _silence_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``silence add|list|expire``, each with ``-c``."""
    silence = sub.add_parser("silence", help="runtime silences: add, list, expire")
    actions = silence.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        cmd = actions.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument(
            "-c",
            "--config",
            help="config file (else $WATCHER_CONFIG, else /etc/watcher/config.yaml)",
        )
        return cmd

    add = action("add", "silence matching transitions (recorded, sent to no sink)")
    add.add_argument(
        "--match",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a glob on a route match key or job_id (repeatable; all must match)",
    )
    span = add.add_mutually_exclusive_group()
    span.add_argument("--for", dest="for_", metavar="DURATION", help="e.g. 30m, 2h, 1d")
    span.add_argument("--until", metavar="RFC3339", help="e.g. 2026-12-03T18:00:00+01:00")
    add.add_argument(
        "--until-resolved",
        nargs=2,
        metavar=("SOURCE", "JOB_ID"),
        help="end when the job ends or its alert resolves (matches that job unless --match)",
    )
    add.add_argument("--comment", required=True, help="why (shown in list and status)")
    add.add_argument("--by", help="who (default: your user name)")
    add.add_argument("--all", action="store_true", help="allow a silence of everything")
    listing = action("list", "silences in force (with --all: ended ones too)")
    _output(listing)
    listing.add_argument("--all", action="store_true", help="ended silences too")
    expire = action("expire", "end a silence now")
    expire.add_argument("id", metavar="ID")
    expire.add_argument("--by", help="who (default: your user name)")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = _parser()
        args = parser.parse_args(argv)
        if args.command == "completion":
            from watcher.cli.completion import script

            print(script(parser, args.shell), end="")
            return 0
        from watcher.cli import commands as cli  # heavy imports only once the arguments are valid

        code = cli.dispatch(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``watcher schema config | head -1``): no traceback, and no
        # second error when Python flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_CLOSED_PIPE
    return code


if __name__ == "__main__":
    sys.exit(main())
