"""`base_url` is a scheme and a host: a path or a query is refused before any request."""

from __future__ import annotations

from typing import Any

import pytest

from sources.klaviyo import klaviyo_source
from sources.klaviyo.exceptions import KlaviyoConfigError


@pytest.mark.parametrize(
    "suffix",
    ["/api/segments/?x=1", "?x=1", "/api", "/api/segments/", "#top"],
)
def test_base_url_with_a_path_or_query_is_refused(emu: Any, suffix: str) -> None:
    base_url = emu.base_url + suffix

    with pytest.raises(KlaviyoConfigError) as raised:
        klaviyo_source(api_key=emu.api_key, base_url=base_url)

    message = str(raised.value)
    assert message == (
        f"base_url {base_url.rstrip('/')!r} must be a scheme and host only, like "
        "https://a.klaviyo.com: no path, query or fragment"
    )
    assert "\n" not in message
    assert emu.stats.total == 0


def test_base_url_with_a_trailing_slash_loads(emu: Any, pipelines_dir: str, tmp_path: Any) -> None:
    import dlt

    pipeline = dlt.pipeline(
        "base_url_slash",
        destination=dlt.destinations.duckdb(str(tmp_path / "slash.duckdb")),
        dataset_name="klaviyo_data",
        pipelines_dir=pipelines_dir,
    )
    source = klaviyo_source(api_key=emu.api_key, base_url=emu.base_url + "/")

    pipeline.run(source.with_resources("segments"))

    with pipeline.sql_client() as client:
        rows = client.execute_sql("select count(*) from segments")
    assert rows[0][0] == len(emu.segment_ids())
