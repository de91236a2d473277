"""The `klaviyo-accounts` command: list the declared accounts, or load one of them.

`klaviyo-accounts run ACCOUNT` is `run_account` for any scheduler that runs commands (cron,
Kubernetes CronJobs, an Airflow BashOperator): it prints the run's summary as one JSON line
and exits 0 when done, 75 when its time budget ended it with work left (run it again soon),
1 with a one-line reason on failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .accounts import load_accounts, run_account
from .cli import EXIT_INCOMPLETE, dlt_logs
from .errors import describe_failure


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments; keys are never among them."""
    parser = argparse.ArgumentParser(
        prog="klaviyo-accounts",
        description="Klaviyo accounts declared in .dlt/config.toml ([accounts.<id>]); keys "
        "from ACCOUNTS__<ID>__API_KEY or .dlt/secrets.toml, never the command line.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the declared accounts, their pipelines and datasets")
    run = commands.add_parser("run", help="load one account")
    run.add_argument("account", help="account id, as in [accounts.<id>]")
    run.add_argument(
        "--max-minutes", type=float, help="time budget (default: [klaviyo_accounts] max_minutes)"
    )
    run.add_argument("--full-refresh", action="store_true", help="load everything again")
    run.add_argument("--verbose", action="store_true", help="show tracebacks and dlt logs")
    commands.add_parser(
        "dagster-demo", help="dagster dev on emulated accounts (options: dagster-demo --help)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["dagster-demo"]:
        from .accounts_demo import main as demo

        return demo(arguments[1:])
    args = build_parser().parse_args(arguments)
    verbose = bool(getattr(args, "verbose", False))
    with dlt_logs(shown=verbose):
        try:
            config = load_accounts()
            if args.command == "list":
                for account in config.accounts.values():
                    state = "" if account.enabled else " (disabled)"
                    print(
                        f"{account.id}{state}: pipeline {account.pipeline_name}, "
                        f"dataset {config.dataset_of(account)}, key from {account.key_location}"
                    )
                return 0
            report = run_account(
                args.account, config, max_minutes=args.max_minutes, full_refresh=args.full_refresh
            )
        except KeyboardInterrupt:
            print("klaviyo-accounts: interrupted; the next run goes on", file=sys.stderr)
            return 130
        except Exception as error:
            if verbose:
                raise
            print(f"klaviyo-accounts: error: {describe_failure(error)}", file=sys.stderr)
            return 1
    print(json.dumps(report.summary()), flush=True)
    return 0 if report.complete else EXIT_INCOMPLETE


if __name__ == "__main__":
    sys.exit(main())
