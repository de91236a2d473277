"""How the API answers: one handler per operation over the account, and what they share.

`handlers` finds an operation's handler by its name; `segments`, `members`, `tags` and
`profiles` hold them. A handler gets a `request.Request` whose query `params` validated (with
the `filters` grammar and `cursors`), pages with `paging` (`profile_pages` for the account's
profiles), builds JSON with `render` and `profile_render`, and raises `errors`.
"""
