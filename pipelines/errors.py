"""Turn whatever a failed run raised into one line a user can act on."""

from __future__ import annotations

import re

from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.destination.exceptions import UnknownDestinationModule
from dlt.pipeline.exceptions import PipelineStepFailed

from sources.klaviyo.exceptions import KlaviyoError, exception_chain

# Private keys are `pk_` + 34 alphanumerics; redact anything of that shape whatever the message.
_KEY_PATTERN = re.compile(r"pk_[A-Za-z0-9]{6,}")
_MAX_LENGTH = 400


class PipelineConfigError(ValueError):
    """A pipeline option that cannot work; its message is the whole explanation."""


def describe_failure(error: BaseException) -> str:
    """One line, without the API key, saying why the run failed.

    Args:
        error: The exception the pipeline raised (often a dlt ``PipelineStepFailed``).

    Returns:
        The most specific explanation found in the exception's chain.
    """
    chain = list(exception_chain(error))
    for cause in chain:
        if isinstance(cause, (KlaviyoError, PipelineConfigError)):
            return _one_line(str(cause))
    for cause in chain:
        if isinstance(cause, ConfigFieldMissingException):
            return _missing_config(cause)
        if isinstance(cause, UnknownDestinationModule):
            return _one_line(
                f"unknown destination {cause.ref!r}: use a dlt destination name "
                "such as duckdb, postgres, bigquery, snowflake, motherduck or filesystem"
            )
    innermost = chain[-1]
    failed_step = next((c.step for c in chain if isinstance(c, PipelineStepFailed)), None)
    where = f"destination error during {failed_step}: " if failed_step in ("sync", "load") else ""
    return _one_line(f"{where}{type(innermost).__name__}: {innermost}")


def _missing_config(error: ConfigFieldMissingException) -> str:
    fields = ", ".join(error.fields)
    if "api_key" in error.fields:
        return (
            "no Klaviyo API key: set SOURCES__KLAVIYO__API_KEY or api_key under "
            "[sources.klaviyo] in .dlt/secrets.toml"
        )
    return f"missing configuration: {fields} (of {error.spec_name}); see .dlt/config.toml and the README"


def _one_line(text: str) -> str:
    first = " ".join(text.strip().split("\n", 1)[0].split())
    first = _KEY_PATTERN.sub("pk_***", first)
    return first if len(first) <= _MAX_LENGTH else first[: _MAX_LENGTH - 1] + "…"
