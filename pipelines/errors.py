"""Turn whatever a failed run raised into one line a user can act on."""

from __future__ import annotations

import re

from dlt.common.configuration.exceptions import ConfigFieldMissingException, LookupTraces
from dlt.common.destination.exceptions import UnknownDestinationModule
from dlt.pipeline.exceptions import PipelineStepFailed

from sources.klaviyo.exceptions import KlaviyoError, exception_chain

# Private keys are `pk_` + 34 alphanumerics; redact anything of that shape whatever the message.
_KEY_PATTERN = re.compile(r"pk_[A-Za-z0-9]{6,}")
_MAX_LENGTH = 400
# A failed load's cause is cut shorter, so that the way out that follows it always fits.
_MAX_CAUSE_LENGTH = 220
DROP_PENDING_OPTION = "--drop-pending"
DUCKDB_OUT_OF_MEMORY = "Out of Memory Error"
DUCKDB_MEMORY_HINT = (
    "DuckDB reached its memory_limit, raise it: DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG="
    """'{"memory_limit": "400MB"}' or destination.duckdb.credentials.global_config"""
)
_EXAMPLE_URLS = {"postgres": "postgresql://user:password@host:5432/database"}


class PipelineConfigError(ValueError):
    """A pipeline option that cannot work; its message is the whole explanation."""


class PipelineBusyError(RuntimeError):
    """Another run of the same pipeline holds its lock; the message names that run."""


def describe_failure(error: BaseException) -> str:
    """One line, without the API key, saying why the run failed.

    Args:
        error: The exception the pipeline raised (often a dlt ``PipelineStepFailed``).

    Returns:
        The most specific explanation found in the exception's chain; when the failed run
        left a load package pending, the line also names it and the way out.
    """
    chain = list(exception_chain(error))
    for cause in chain:
        if isinstance(cause, (KlaviyoError, PipelineConfigError, PipelineBusyError)):
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
    step_failed = next((c for c in chain if isinstance(c, PipelineStepFailed)), None)
    failed_step = step_failed.step if step_failed else None
    where = f"destination error during {failed_step}: " if failed_step in ("sync", "load") else ""
    reason = f"{where}{type(innermost).__name__}: {innermost}"
    if DUCKDB_OUT_OF_MEMORY in str(innermost):
        # the limit is the pipeline's own (`make_destination`), so say where it is set
        reason = f"{DUCKDB_MEMORY_HINT}; {reason}"
    pending = _pending_package(step_failed)
    if pending is None:
        return _one_line(reason)
    return (
        f"{_one_line(reason, _MAX_CAUSE_LENGTH)}; load package {pending} stays pending and every "
        f"run loads it first: fix the cause and run again, or run with {DROP_PENDING_OPTION} "
        "to drop it and extract its rows again"
    )


def _pending_package(step_failed: PipelineStepFailed | None) -> str | None:
    # A package that failed to normalize or load is kept by dlt and retried before anything
    # else, so the same error comes back on every run until the user acts.
    if step_failed is None or step_failed.step not in ("normalize", "load"):
        return None
    if not step_failed.has_pending_data or not step_failed.load_id:
        return None
    return str(step_failed.load_id)


def _missing_config(error: ConfigFieldMissingException) -> str:
    fields = ", ".join(error.fields)
    if "api_key" in error.fields:
        return (
            "no Klaviyo API key: set SOURCES__KLAVIYO__API_KEY or api_key under "
            "[sources.klaviyo] in .dlt/secrets.toml"
        )
    if _lacks_password(error):
        return _no_password(error)
    return f"missing configuration: {fields} (of {error.spec_name}); see .dlt/config.toml and the README"


def _lacks_password(error: ConfigFieldMissingException) -> bool:
    """Whether dlt's missing `credentials` are a connection URL without a password.

    dlt reports such a URL as missing `credentials`; the traces of the embedded credentials
    name `password` as the field it looked for and did not find.
    """
    return any(
        isinstance(found, LookupTraces) and "password" in found.traces
        for found in error.traces.get("credentials", ())
    )


def _no_password(error: ConfigFieldMissingException) -> str:
    """The way out: a password in the URL, any one when the server does not check it."""
    name = _destination_name(error)
    where = f"DESTINATION__{name.upper()}__CREDENTIALS" if name else "the destination credentials"
    example = _EXAMPLE_URLS.get(name or "", "scheme://user:password@host:port/database")
    return (
        f"the {name or 'destination'} connection URL has no password: put one in it, any "
        f"password if the server trusts the connection (trust auth), e.g. {example} in {where}"
    )


def _destination_name(error: ConfigFieldMissingException) -> str | None:
    """`postgres` from the config sections dlt looked the password up in."""
    for found in error.traces.get("credentials", ()):
        for trace in found.traces.get("password", ()) if isinstance(found, LookupTraces) else ():
            sections = list(getattr(trace, "sections", ()))
            if len(sections) == 3 and sections[0] == "destination":
                return str(sections[1])
    return None


def _one_line(text: str, limit: int = _MAX_LENGTH) -> str:
    first = " ".join(text.strip().split("\n", 1)[0].split())
    first = _KEY_PATTERN.sub("pk_***", first)
    return first if len(first) <= limit else first[: limit - 1] + "…"
