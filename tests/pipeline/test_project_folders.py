"""Two project folders with every default: each loads its own DuckDB file, from its own folder."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from dlt.common.pipeline import get_dlt_pipelines_dir

from klaviyo_emulator import Emulator

from .conftest import DUCKDB_FILE, Project


def test_each_project_folder_gets_its_own_file_and_working_folder(
    emu: Emulator, tmp_path: Path
) -> None:
    # Only the pipeline name is set, so that no other test shares dlt's per-user folder.
    name = f"klaviyo_folders_{uuid.uuid4().hex[:8]}"
    env = {"SOURCES__KLAVIYO__API_KEY": emu.api_key, "SOURCES__KLAVIYO__BASE_URL": emu.base_url}
    first, second = (Project(tmp_path / folder, env) for folder in ("a", "b"))
    for project in (first, second):
        project.root.mkdir()

    for project in (first, second):
        result = project.run("--pipeline-name", name)
        assert result.returncode == 0, result.stderr
        assert f"Loaded into {project.root / DUCKDB_FILE} (DuckDB)" in result.stdout
        project.tables.assert_matches_account(emu)
        assert (project.root / ".dlt/pipelines" / name / "state.json").is_file()
    assert not (Path(get_dlt_pipelines_dir()) / name).exists()

    shutil.rmtree(first.root)
    profile_id = emu.create_profile(email="after-a-was-deleted@example.com")
    emu.add_member(emu.segment_ids()[0], profile_id)
    result = second.run("--pipeline-name", name)

    assert result.returncode == 0, result.stderr
    second.tables.assert_matches_account(emu)
    assert not first.root.exists()
