"""What every group of handlers shares: the account, lookups that answer 404, page links."""

from __future__ import annotations

from ..backend.account import Account, NotFound
from ..backend.models import Segment, Tag
from .errors import not_found
from .paging import Page
from .request import Request


class Responses:
    """Handlers of one resource over one account; a handler is the method named like its
    operation, taking a `Request` and returning `(status, JSON body)`."""

    def __init__(self, account: Account) -> None:
        self.account = account

    def segment(self, request: Request) -> Segment:
        try:
            return self.account.segment(request.segment_id or "")
        except NotFound:
            raise not_found(f"A segment with id {request.segment_id} does not exist.") from None

    def tag(self, request: Request) -> Tag:
        try:
            return self.account.tag(request.tag_id or "")
        except NotFound:
            raise not_found(f"A tag with id {request.tag_id} does not exist.") from None


def page_links(request: Request, page: Page) -> dict[str, str | None]:
    """`links` of a paged collection."""
    return {
        "self": request.self_link,
        "next": request.page_link(page.next),
        "prev": request.page_link(page.prev),
    }
