"""One handler per operation, looked up by the operation's name in `spec.operations`."""

from __future__ import annotations

from collections.abc import Callable

from ..backend.account import Account
from ..spec.operations import OPERATIONS
from ..spec.shapes import Operation
from .members import MemberResponses
from .profiles import ProfileResponses
from .request import Request, Result
from .segments import SegmentResponses
from .tags import TagResponses

Handler = Callable[[Request], Result]


class Handlers:
    """The handlers over one account; each runs under the account's lock."""

    def __init__(self, account: Account) -> None:
        self.account = account
        groups = (
            SegmentResponses(account),
            MemberResponses(account),
            TagResponses(account),
            ProfileResponses(account),
        )
        self._handlers: dict[str, Handler] = {}
        for operation in OPERATIONS:
            found = [
                getattr(group, operation.name) for group in groups if hasattr(group, operation.name)
            ]
            if len(found) != 1:
                raise LookupError(f"{len(found)} handlers for operation {operation.name!r}")
            self._handlers[operation.name] = found[0]

    def run(self, operation: Operation, request: Request) -> Result:
        """`(status, JSON body)` of the operation; raises ApiError for an error answer."""
        with self.account.lock:
            return self._handlers[operation.name](request)
