"""Smoke test of the Airflow DAG: `dag.test()` over two emulated accounts into DuckDB.

Not part of `make test` (Airflow is a large install): `make airflow-smoke` sets up its own
virtual environment with Airflow and this project, an Airflow home with a SQLite metadata
database, and runs this script. It exits 0 when both accounts loaded what their emulators
hold, and when the key of neither appears in the task logs or XComs.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import duckdb

from klaviyo_emulator import Emulator


def main() -> int:
    with (
        tempfile.TemporaryDirectory(prefix="klaviyo-airflow-") as folder,
        Emulator(seed=1) as acme,
        Emulator(seed=2) as beta,
    ):
        project = Path(folder)
        (project / ".dlt").mkdir()
        lines = ["[klaviyo_accounts]", 'destination = "duckdb"', 'duckdb_dir = "data"']
        emulators = {"acme": acme, "beta": beta}
        for account_id, emu in emulators.items():
            lines += [f"[accounts.{account_id}]", f'base_url = "{emu.base_url}"']
            os.environ[f"ACCOUNTS__{account_id.upper()}__API_KEY"] = emu.api_key
        (project / ".dlt" / "config.toml").write_text("\n".join(lines) + "\n")
        os.environ["KLAVIYO_PROJECT_DIR"] = str(project)

        from pipelines.airflow_dag import dag_object

        run = dag_object.test()
        state = str(getattr(run, "state", ""))
        print(f"dag run state: {state}", flush=True)
        failures = []
        for account_id, emu in emulators.items():
            expected = sum(len(emu.members(s)) for s in emu.segment_ids())
            database = project / "data" / f"klaviyo_segments__{account_id}.duckdb"
            with duckdb.connect(str(database), read_only=True) as db:
                (loaded,) = db.execute(
                    f"select count(*) from klaviyo_{account_id}.segment_memberships"
                ).fetchone()  # type: ignore[misc]
            print(f"{account_id}: {loaded} memberships loaded, {expected} in the account")
            if loaded != expected:
                failures.append(account_id)
        logs = "".join(
            path.read_text(errors="replace")
            for path in Path(os.environ.get("AIRFLOW_HOME", ".")).rglob("*.log")
        )
        leaked = [a for a, emu in emulators.items() if emu.api_key in logs]
        if leaked:
            print(f"keys found in Airflow logs: {leaked}")
        ok = state.endswith("success") and not failures and not leaked
        print("airflow smoke: " + ("passed" if ok else "failed"), flush=True)
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
