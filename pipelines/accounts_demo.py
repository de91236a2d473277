"""`dagster dev` on emulated accounts: several Klaviyo emulators, a project folder, Dagster's UI.

`python -m pipelines.accounts_demo` starts one emulator per account, writes a project folder
(`.demo/dagster` by default) whose `.dlt/config.toml` declares the accounts and whose
`.dlt/secrets.toml` holds the emulators' keys, then runs `dagster dev` in it. The accounts
sensor adds a partition per account and loads each one (into a DuckDB file per account);
the schedule loads them again every hour. Ctrl-C stops Dagster and the emulators.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from klaviyo_emulator import Emulator
from pipelines import account_settings as settings

DAGSTER_YAML = f"""# Dagster instance of the demo: at most one run per account at a time.
run_queue:
  max_concurrent_runs: 4
  tag_concurrency_limits:
    - key: "{settings.ACCOUNT_TAG}"
      value:
        applyLimitPerUniqueValue: true
      limit: 1
telemetry:
  enabled: false
"""


def write_project(folder: Path, emulators: dict[str, Emulator]) -> None:
    """The project folder: accounts in config.toml, keys in secrets.toml, a Dagster home."""
    dlt_dir = folder / ".dlt"
    dlt_dir.mkdir(parents=True, exist_ok=True)
    config = [
        "[runtime]",
        'log_level = "WARNING"',
        "dlthub_telemetry = false",
        "",
        f"[{settings.SETTINGS_SECTION}]",
        'destination = "duckdb"',
        'duckdb_dir = "data"',
        "",
    ]
    secrets = []
    for account_id, emu in emulators.items():
        config += [f"[accounts.{account_id}]", f'base_url = "{emu.base_url}"', ""]
        secrets += [f"[accounts.{account_id}]", f'api_key = "{emu.api_key}"', ""]
    (dlt_dir / "config.toml").write_text("\n".join(config), encoding="utf-8")
    (dlt_dir / "secrets.toml").write_text("\n".join(secrets), encoding="utf-8")
    (folder / "data").mkdir(exist_ok=True)
    home = folder / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code of `dagster dev` (0 when stopped with Ctrl-C)."""
    parser = argparse.ArgumentParser(
        prog="klaviyo-accounts dagster-demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--dir", default=".demo/dagster", help="project folder (.demo/dagster)")
    parser.add_argument("--accounts", type=int, default=3, help="emulated accounts (3)")
    parser.add_argument("--dataset", default="demo", help="emulator dataset of each account")
    parser.add_argument("--port", type=int, default=3000, help="Dagster UI port (3000)")
    parser.add_argument(
        "--no-dagster",
        action="store_true",
        help="only serve the emulators and write the folder; run `dagster dev` yourself",
    )
    args = parser.parse_args(argv)
    folder = Path(args.dir).absolute()
    with contextlib.ExitStack() as stack:
        emulators = {
            f"shop_{number}": stack.enter_context(Emulator(dataset=args.dataset, seed=number))
            for number in range(1, args.accounts + 1)
        }
        write_project(folder, emulators)
        for account_id, emu in emulators.items():
            print(f"account {account_id}: emulator at {emu.base_url}", flush=True)
        home = folder / "dagster_home"
        command = ["dagster", "dev", "-m", "pipelines.dagster_definitions", "-p", str(args.port)]
        print(f"project folder {folder}", flush=True)
        if args.no_dagster:
            print(
                f"run: cd {folder} && DAGSTER_HOME={home} {' '.join(command)}   (Ctrl-C here stops the emulators)",
                flush=True,
            )
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
            return 0
        executable = Path(sys.executable).with_name("dagster")
        command[0] = str(executable) if executable.exists() else "dagster"
        environment = {**os.environ, "DAGSTER_HOME": str(home)}
        process = subprocess.Popen(command, cwd=folder, env=environment)
        # Stopped by a supervisor (SIGTERM): Dagster is stopped too, then the emulators.
        signal.signal(signal.SIGTERM, lambda *_: process.terminate())
        try:
            return process.wait()
        except KeyboardInterrupt:
            process.wait()
            return 0


if __name__ == "__main__":
    sys.exit(main())
