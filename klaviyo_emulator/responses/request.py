"""What a handler is given: the validated request, and the context that shapes its answer."""

from __future__ import annotations

from dataclasses import dataclass

from ..spec import resources
from ..spec.revisions import (
    FLOW_TRIGGERS_FROM,
    PROFILE_CONVERSATIONS_FROM,
    PROFILE_PUSH_TOKENS_FROM,
    since,
)
from .paging import page_link
from .params import Query

Result = tuple[int, bytes]  # (status, JSON body)


@dataclass(frozen=True)
class Context:
    """What shapes a response besides the data: link prefix, path form and revision."""

    base: str  # scheme and host the client used, e.g. "http://127.0.0.1:8080"
    slash: bool  # the request path ended in "/", so generated links do too
    revision: str  # date part of the revision header

    def link(self, path: str) -> str:
        return f"{self.base}{path}/" if self.slash else f"{self.base}{path}"

    @property
    def flows(self) -> bool:
        """Segments have `flow-triggers` relationships."""
        return since(self.revision, FLOW_TRIGGERS_FROM)

    @property
    def push_tokens(self) -> bool:
        """Profiles (segment members too) have a `push-tokens` relationship."""
        return since(self.revision, PROFILE_PUSH_TOKENS_FROM)

    @property
    def conversations(self) -> bool:
        """Profiles of get_profiles and get_profile have a `conversations` relationship."""
        return since(self.revision, PROFILE_CONVERSATIONS_FROM)

    @property
    def profile_trees(self) -> frozenset[str]:
        """The later sub-trees of a profile's additional fields (`resources.PROFILE_TREES`)."""
        return resources.profile_trees(self.revision)


@dataclass
class Request:
    """What an operation needs to know about the request."""

    ctx: Context
    path: str  # as received, without the query string
    raw_query: str
    query: Query
    segment_id: str | None
    body: bytes
    tag_id: str | None = None
    profile_id: str | None = None

    @property
    def self_link(self) -> str:
        query = f"?{self.raw_query}" if self.raw_query else ""
        return f"{self.ctx.base}{self.path}{query}"

    @property
    def unpaged_links(self) -> dict[str, str | None]:
        """`links` of a collection served in one page (API-NOTES §3: next and prev as null)."""
        return {"self": self.self_link, "next": None, "prev": None}

    def page_link(self, token: str | None) -> str | None:
        if token is None:
            return None
        return page_link(self.ctx.base, self.path, self.query.pairs, token)
