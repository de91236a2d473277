"""What the emulator serves, and that everything else of the official API is a JSON:API 404.

docs/emulator.md is what users pointing other tools at the emulator read, so its tables are
checked against the code: operations (paths, scopes, tiers), revisions, fault kinds, options.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import requests
import spec

from klaviyo_emulator import Emulator, urls
from klaviyo_emulator.__main__ import build_parser
from klaviyo_emulator.spec import revisions
from klaviyo_emulator.spec.operations import BY_NAME, OPERATIONS
from klaviyo_emulator.wire.faults import FAULT_KINDS

DOC = Path(__file__).resolve().parents[2] / "docs" / "emulator.md"
REVISION = "2026-07-15"
needs_specs = pytest.mark.skipif(spec.specs_dir() is None, reason="Klaviyo OpenAPI specs not found")


def _doc() -> str:
    return DOC.read_text("utf-8")


def _table_rows(heading_cells: tuple[str, ...]) -> list[list[str]]:
    """The body rows of the first table whose header starts with these cells."""
    lines = _doc().splitlines()
    for index, line in enumerate(lines):
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if tuple(cells[: len(heading_cells)]) == heading_cells:
            rows = []
            for row in lines[index + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append([cell.strip() for cell in row.strip().strip("|").split("|")])
            return rows
    raise AssertionError(f"no table headed {heading_cells} in {DOC}")


def _served() -> list[tuple[str, str]]:
    """(method, operation) of every served route."""
    return [(operation.method, operation.name) for operation in OPERATIONS]


def _routed(method: str, path: str) -> str | None:
    """The name of the operation a request is routed to."""
    operation = urls.match(method, path).operation
    return None if operation is None else operation.name


def test_every_served_operation_is_documented_with_its_path_scopes_and_tier() -> None:
    rows = {row[0].strip("`"): row for row in _table_rows(("operation", "2024-10-15+ name"))}
    assert set(rows) == {operation for _, operation in _served()}
    for method, operation in _served():
        row = rows[operation]
        documented_method, path = row[2].strip("`").split(" ", 1)
        assert documented_method == method, operation
        concrete = path.replace("{id}", "X1y2Z3")
        for form in (concrete, concrete + "/"):
            assert _routed(method, form) == operation, (operation, form)
        scopes = set(re.findall(r"`([a-z]+:[a-z]+)`", row[3]))
        assert scopes == set(BY_NAME[operation].scopes), operation
        assert row[4].split(";")[0].split(",")[0] == BY_NAME[operation].tier, operation
        cap = BY_NAME[operation].daily_cap
        assert (f"{cap}/day" in row[4]) if cap else ("/day" not in row[4]), operation
        assert row[1].split(" ")[0].strip("`") == (BY_NAME[operation].alias or operation)
        since = BY_NAME[operation].first
        assert row[5] == (f"{since} on" if since != revisions.FIRST else "all"), operation


def test_every_accepted_revision_is_documented() -> None:
    section = _doc().split("## Revisions", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(\d{4}-\d{2}-\d{2})`", section.split("What changes")[0]))
    assert documented == set(revisions.ACCEPTED_REVISIONS)
    for revision, served_as in revisions.SERVED_AS.items():
        assert f"`{revision}` is Klaviyo's current revision" in section
        assert f"answered exactly as `{served_as}`" in section


def test_every_fault_kind_is_documented() -> None:
    documented = {
        kind.strip("` ")
        for row in _table_rows(("kind", "what the client gets"))
        for kind in row[0].split(",")
    }
    assert documented == set(FAULT_KINDS)


def test_every_command_line_option_is_documented() -> None:
    documented = {
        option
        for row in _table_rows(("option", "meaning", "default"))
        for option in re.findall(r"--[a-z-]+", row[0])
    }
    options = {
        option
        for action in build_parser()._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }
    assert documented == options


def test_readme_links_the_document() -> None:
    readme = (DOC.parents[1] / "README.md").read_text("utf-8")
    section = readme.split("## The emulator", 1)[1].split("\n## ", 1)[0]
    assert "(docs/emulator.md)" in section


# --- everything else is a JSON:API 404 -------------------------------------------------------


def _official_operations() -> list[tuple[str, str]]:
    if spec.specs_dir() is None:
        return []
    paths = spec.load_full_spec(REVISION)["paths"]
    return sorted(
        (method.upper(), path)
        for path, item in paths.items()
        for method in item
        if method in ("get", "post", "patch", "put", "delete")
    )


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "X1y2Z3", path)


def _unserved(operations: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [
        (method, path) for method, path in operations if _routed(method, _concrete(path)) is None
    ]


@needs_specs
def test_every_official_operation_is_served_or_answers_a_json_api_404(emu: Emulator) -> None:
    operations = _official_operations()
    unserved = _unserved(operations)
    served = {_routed(m, _concrete(p)) for m, p in operations} - {None}
    assert served == {operation for _, operation in _served()}, "served paths not in the spec"
    assert len(unserved) > 100
    session = requests.Session()
    session.headers.update(
        {
            "Authorization": f"Klaviyo-API-Key {emu.api_key}",
            "revision": REVISION,
            "Content-Type": "application/vnd.api+json",
        }
    )
    loaded = spec.load_full_spec(REVISION)
    for method, path in unserved:
        for form in (_concrete(path), _concrete(path) + "/"):
            response = session.request(method, emu.base_url + form, data=b"{}", timeout=10)
            assert response.status_code == 404, f"{method} {form}: {response.status_code}"
            assert response.headers["Content-Type"] == "application/vnd.api+json"
            document: Any = response.json()
            assert document["errors"][0]["code"] == "not_found"
        errors = spec.validation_errors(document, spec.response_schema(loaded, method, path, 404))
        assert not errors, f"{method} {path}: " + "\n".join(errors)


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/api/tags"),
        ("PATCH", "/api/tags/{tag}"),
        ("DELETE", "/api/tags/{tag}"),
        ("POST", "/api/tags/{tag}/relationships/segments"),
        ("DELETE", "/api/tags/{tag}/relationships/segments/"),
        ("GET", "/api/tags/{tag}/segments"),
        ("GET", "/api/tags/{tag}/relationships/lists"),
        ("GET", "/api/tag-groups/{tag}"),
        ("GET", "/api/profiles/01HZX8A6R0J3VQ2N9P4K7T5M1B/segments"),
        ("GET", "/api/profiles/01HZX8A6R0J3VQ2N9P4K7T5M1B/relationships/lists/"),
        ("POST", "/api/profiles"),
        ("PATCH", "/api/profiles/01HZX8A6R0J3VQ2N9P4K7T5M1B/"),
    ],
)
def test_links_and_methods_not_served_are_404_not_405(
    emu: Emulator, method: str, path: str
) -> None:
    tag_id = emu.tag_ids()[0]
    headers = {
        "Authorization": f"Klaviyo-API-Key {emu.api_key}",
        "revision": REVISION,
        "Content-Type": "application/vnd.api+json",
    }
    url = emu.base_url + path.replace("{tag}", tag_id)
    response = requests.request(method, url, headers=headers, data=b"{}", timeout=10)
    assert response.status_code == 404, response.text
    assert response.json()["errors"][0]["code"] == "not_found"
    assert emu.tag(tag_id)  # nothing was changed


@pytest.mark.parametrize(
    "method, path",
    [("PUT", "/api/tags"), ("POST", "/api/tags/{tag}"), ("PATCH", "/api/segments/{tag}/tags")],
)
def test_a_method_the_official_api_lacks_is_405(emu: Emulator, method: str, path: str) -> None:
    headers = {"Authorization": f"Klaviyo-API-Key {emu.api_key}", "revision": REVISION}
    url = emu.base_url + path.replace("{tag}", emu.tag_ids()[0])
    response = requests.request(method, url, headers=headers, timeout=10)
    assert response.status_code == 405, response.text
