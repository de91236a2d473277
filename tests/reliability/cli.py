"""Running `klaviyo-segments` as a user does: a subprocess with the key in the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb

ERROR_PREFIX = "klaviyo-segments: error: "
PIPELINE_NAME = "klaviyo_segments"


def command() -> list[str]:
    """The installed console script, or the module when the venv has none."""
    script = Path(sys.executable).with_name("klaviyo-segments")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pipelines.cli"]


@dataclass
class Workspace:
    """A folder to run the CLI in, with its own pipelines folder and DuckDB file."""

    root: Path

    @property
    def pipelines_dir(self) -> Path:
        return self.root / "pipelines"

    @property
    def duckdb_file(self) -> Path:
        return self.root / "warehouse.duckdb"

    def run(
        self, *arguments: str, env: dict[str, str] | None = None, verbose: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """`klaviyo-segments run --quiet ...` with only the given SOURCES__/DESTINATION__ vars."""
        environment = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SOURCES__", "DESTINATION__", "KLAVIYO_"))
        }
        environment.update(env or {})
        options = ["--verbose"] if verbose else ["--quiet"]
        return subprocess.run(
            [
                *command(),
                "run",
                *options,
                "--pipelines-dir",
                str(self.pipelines_dir),
                "--duckdb-file",
                str(self.duckdb_file),
                *arguments,
            ],
            cwd=self.root,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def state(self) -> dict:
        """The local pipeline state, {} when the pipeline never got that far."""
        path = self.pipelines_dir / PIPELINE_NAME / "state.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def pending_packages(self) -> list[Path]:
        """Load packages extracted or normalized but not loaded yet."""
        working = self.pipelines_dir / PIPELINE_NAME
        folders = ["normalize/extracted", "load/normalized", "load/new"]
        return [p for f in folders if (working / f).is_dir() for p in (working / f).iterdir()]

    def tables(self) -> list[str]:
        """Tables in the DuckDB file; none when the file was never created."""
        if not self.duckdb_file.exists():
            return []
        with duckdb.connect(str(self.duckdb_file), read_only=True) as connection:
            rows = connection.execute("select table_name from information_schema.tables").fetchall()
        return sorted(name for (name,) in rows)
