"""The API key never leaves the process: not in output, logs, traces, packages, state or tables.

The CLI runs with `--verbose` (dlt's logs, the retry log lines and tracebacks on stderr)
through successful runs, retried faults and failures; then every file it left behind (the
pipelines folder with its traces, load packages and state, the DuckDB file) is searched for
the key, byte for byte and, in the database, value by value.
"""

from __future__ import annotations

from pathlib import Path

import dlt
import duckdb
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from klaviyo_emulator import Emulator
from sources.klaviyo import klaviyo_source

from .cli import Workspace

REJECTED_KEY = "pk_" + "LeakCanaryLeakCanaryLeakCanary1234"


def _secrets(*keys: str) -> list[bytes]:
    """The keys, and the part after `pk_` on its own (in case the prefix was cut off)."""
    return [text.encode() for key in keys for text in (key, key[3:])]


def _files_holding(root: Path, secrets: list[bytes]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path} holds {s.decode()[:6]}…" for s in secrets if s in data]
    return found


def _values_holding(database: Path, secrets: list[bytes]) -> list[str]:
    """Every text value of every table, searched (DuckDB may compress what the file holds)."""
    found = []
    with duckdb.connect(str(database), read_only=True) as connection:
        columns = connection.execute(
            "select table_schema, table_name, column_name from information_schema.columns"
        ).fetchall()
        for schema, table, column in columns:
            for secret in secrets:
                (hits,) = connection.execute(
                    f'select count(*) from "{schema}"."{table}"'
                    f' where cast("{column}" as varchar) like ?',
                    [f"%{secret.decode()}%"],
                ).fetchone() or (0,)
                if hits:
                    found.append(f"{schema}.{table}.{column} holds the key")
    return found


def test_key_appears_nowhere_after_success_and_failure(emu: Emulator, tmp_path: Path) -> None:
    limited = emu.create_api_key({"segments:read"})
    workspace = Workspace(tmp_path)
    env = {"SOURCES__KLAVIYO__API_KEY": emu.api_key, "SOURCES__KLAVIYO__BASE_URL": emu.base_url}
    outputs = []

    def run(*arguments: str, expect: int, **changes: str) -> None:
        result = workspace.run(*arguments, env={**env, **changes}, verbose=True)
        outputs.append(result.stdout + result.stderr)
        assert result.returncode == expect, result.stderr[-2000:]

    # success, with retried faults on the way (their log lines carry URLs and reasons)
    emu.faults.script(kind="503", count=2, path_contains="/profiles")
    emu.faults.script(kind="drop", count=1, path_contains="/api/segments")
    run(expect=0)
    emu.add_member(emu.segment_ids()[0], emu.create_profile(email="canary@example.com"))
    run(expect=0)
    # failures: retries exhausted, a 403, a 401 with another key, a malformed body, bad config
    emu.faults.script(kind="502-html", count=50, path_contains="/profiles")
    run(expect=1, SOURCES__KLAVIYO__MAX_RETRIES="1")
    emu.faults.clear()
    run(expect=1, SOURCES__KLAVIYO__API_KEY=limited)
    run(expect=1, SOURCES__KLAVIYO__API_KEY=REJECTED_KEY)
    emu.faults.script(kind="html-200", count=10)
    run(expect=1)
    emu.faults.clear()
    run("--workers", "0", expect=1)
    run("--segment-id", "NoSuch1", expect=1)

    secrets = _secrets(emu.api_key, limited, REJECTED_KEY)
    assert "Traceback" in "".join(outputs)  # --verbose did show the tracebacks
    assert [o for o in outputs if any(s.decode() in o for s in secrets)] == []
    assert _files_holding(tmp_path, secrets) == []
    assert _values_holding(workspace.duckdb_file, secrets) == []


def test_key_is_not_in_exceptions_traces_or_state_in_process(
    emu: Emulator, pipelines_dir: str, tmp_path: Path
) -> None:
    pipeline = dlt.pipeline(
        pipeline_name="klaviyo_secrets",
        destination=dlt.destinations.duckdb(str(tmp_path / "k.duckdb")),
        dataset_name="klaviyo",
        pipelines_dir=pipelines_dir,
    )
    pipeline.run(klaviyo_source(api_key=emu.api_key, base_url=emu.base_url))
    success_trace = pipeline.last_trace
    emu.faults.script(kind="503", count=50, path_contains="/profiles")
    with pytest.raises(PipelineStepFailed) as raised:
        pipeline.run(klaviyo_source(api_key=emu.api_key, base_url=emu.base_url, max_retries=0))

    key = emu.api_key
    texts = [
        str(raised.value),
        repr(raised.value),
        str(success_trace),
        repr(success_trace.asdict()),
        str(pipeline.last_trace),
        repr(pipeline.last_trace.asdict()),
        repr(pipeline.state),
        repr(klaviyo_source(api_key=key, base_url=emu.base_url)),
    ]
    exception: BaseException | None = raised.value
    while exception is not None:
        texts += [str(exception), repr(exception), repr(getattr(exception, "__dict__", ""))]
        exception = exception.__cause__ or exception.__context__
    assert [t for t in texts if key in t or key[3:] in t] == []
    assert _files_holding(tmp_path, _secrets(key)) == []
