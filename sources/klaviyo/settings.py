"""Constants of the Klaviyo segments source: tables, endpoints, page sizes, rate tiers, defaults."""

from __future__ import annotations

DEFAULT_BASE_URL = "https://a.klaviyo.com"
DEFAULT_REVISION = "2026-07-15"
"""The newest revision with a published spec; 2024-06-15 keeps working too. Any real date is
accepted (`options.validate_revision`), Klaviyo's current 2026-10-15 included: what a revision
changes is looked up by comparing dates, so a newer one is treated as this one."""

REVISION_PATTERN = r"^(\d{4}-\d{2}-\d{2})(\.pre)?$"

# Tables; each resource is named like the table it loads.
SEGMENTS_TABLE = "segments"
TAGS_TABLE = "tags"
SEGMENT_TAGS_TABLE = "segment_tags"
PROFILES_TABLE = "profiles"
MEMBERSHIPS_TABLE = "segment_memberships"
HISTORY_TABLE = "segment_membership_history"
MEMBERSHIP_TABLES = (PROFILES_TABLE, MEMBERSHIPS_TABLE, HISTORY_TABLE)
"""Tables fed by the membership walk; each keeps its own cursors."""
RECONCILED_TABLES = (MEMBERSHIPS_TABLE, HISTORY_TABLE)
"""The tables whose rows a reconciliation closes; `profiles` keeps every profile it saw."""

# What a revision changes (API-NOTES §1). Each threshold is the first revision with the change;
# `api/endpoints.py` is the only module that compares revisions.
PATHS_WITHOUT_TRAILING_SLASH_FROM = "2024-10-15"
PROFILE_IDS_PAGE_100_FROM = "2024-10-15"
L_TIER_STEADY_750_FROM = "2026-01-15"
SEGMENTS_PAGE_SIZE_PARAM_FROM = "2026-04-15"

# Paths in the 2024-06-15 form; the trailing slash is dropped from PATHS_WITHOUT_TRAILING_SLASH_FROM.
SEGMENTS_PATH = "/api/segments/"
SEGMENT_PROFILES_PATH = "/api/segments/{segment_id}/profiles/"
SEGMENT_PROFILE_IDS_PATH = "/api/segments/{segment_id}/relationships/profiles/"
PROFILES_PATH = "/api/profiles/"

SEGMENTS_PAGE_SIZE = 10
"""get_segments serves at most 10 segments per page in every revision; the `page[size]`
parameter is sent from SEGMENTS_PAGE_SIZE_PARAM_FROM."""
SEGMENT_PROFILES_PAGE_SIZE = 100
"""Maximum of get_segment_profiles; read at call time so tests can page in small steps."""
SEGMENT_PROFILE_IDS_PAGE_SIZE = 100
"""Maximum of get_segment_relationships_profiles from PROFILE_IDS_PAGE_100_FROM (read at call time)."""
SEGMENT_PROFILE_IDS_PAGE_SIZE_EARLIER = 1000
"""Maximum of get_segment_relationships_profiles before PROFILE_IDS_PAGE_100_FROM."""
PROFILES_PAGE_SIZE = 100
"""Maximum of get_profiles in every revision (read at call time)."""

# Burst (per second) and steady (per minute) limits per operation the source calls (API-NOTES §10).
L_TIER = (75, 700)
"""Segment GETs: Klaviyo's L tier."""
L_TIER_STEADY_750 = 750
"""The L tier's steady limit from L_TIER_STEADY_750_FROM."""
RATE_LIMITS: dict[str, tuple[int, int]] = {
    "get_segments": L_TIER,
    "get_segment_profiles": L_TIER,
    "get_segment_relationships_profiles": L_TIER,
    "get_profiles": L_TIER,
}
# Klaviyo counts a request when it arrives, the limiter when it leaves: the windows are a
# little longer than Klaviyo's so that network jitter cannot squeeze one request too many in.
BURST_WINDOW_SECONDS = 1.05
STEADY_WINDOW_SECONDS = 61.0

# The scope a 403 most likely means, when Klaviyo's detail does not name one. A profile
# walk only starts after the segment list was read, so segments:read is already proven.
OPERATION_SCOPES: dict[str, str] = {
    "get_segments": "segments:read",
    "get_segment_profiles": "profiles:read",
    "get_segment_relationships_profiles": "profiles:read",
    "get_profiles": "profiles:read",
}
PROFILE_PAGE_OPERATIONS = ("get_segment_profiles", "get_profiles")
"""Operations whose pages are profiles, decoded to what the source reads (`api.profile_pages`)."""

# HTTP behaviour.
PRIVATE_KEY_PATTERN = r"pk_[A-Za-z0-9]{34}"
"""Klaviyo private keys: `pk_` and 34 letters and digits."""
UNREACHABLE_RETRIES = 3
"""Retries of a connection that cannot be made to a host that never answered in this process:
it is far more often a wrong base_url than an outage, and should fail in seconds, not minutes."""
THROTTLED_RETRIES_PER_RETRY = 4
"""429s are Klaviyo asking to wait, not failures: each request may wait out this many times
`max_retries` of them (honouring `Retry-After`) before the run gives up."""
HTTP_CONNECTIONS_KEPT = 32
"""Keep-alive connections kept open per client: at least one per worker thread."""
USER_AGENT = "klaviyo-segments-dlt/0.1"
ACCEPT = "application/vnd.api+json"
ACCEPT_ENCODING = "identity"
"""Pages are asked for uncompressed: inflating a gzipped page of 100 profiles (about 140 KB)
costs more CPU than its transfer, about 1.8 MB/s per account at Klaviyo's ceiling. "gzip"
would trade that bandwidth for CPU (the client decodes it)."""
RETRY_STATUSES = frozenset({500, 502, 503, 504})
RETRY_BACKOFF_BASE = 0.5
"""Seconds before the first retry; doubles with each attempt, with full jitter."""
RETRY_BACKOFF_CAP = 30.0
MALFORMED_BODY_RETRIES = 2
"""A 200 that is not JSON:API is retried this often only: it usually means a wrong base URL."""
BODY_EXCERPT_CHARS = 200

# Values every destination can store (README "Odd text and numbers").
UNSTORABLE_TEXT_REPLACEMENT = b"\\ufffd"
"""JSON escape of U+FFFD, which replaces a NUL character (Postgres text and jsonb refuse it) and
a lone UTF-16 surrogate (not encodable as UTF-8) wherever an answer carries one, keys included."""
EXACT_INTEGER_DIGITS = 19
"""An integer literal of this many digits or more may lie outside orjson's 64-bit range (which
it would round to a float): a page holding one is decoded with exact integers instead."""

# Profile attributes as get_segment_profiles returns them (API-NOTES §4.2).
PROFILE_STRING_ATTRIBUTES = (
    "email",
    "phone_number",
    "external_id",
    "first_name",
    "last_name",
    "organization",
    "locale",
    "title",
    "image",
)
PROFILE_DATETIME_ATTRIBUTES = ("created", "updated", "last_event_date")
PROFILE_UPDATED = "updated"
"""When a profile last changed: of two copies of a profile in one load, the newer is kept."""
LOCATION_COORDINATE_FIELDS = ("latitude", "longitude")
LOCATION_FIELDS = (
    "address1",
    "address2",
    "city",
    "country",
    "latitude",
    "longitude",
    "region",
    "zip",
    "timezone",
    "ip",
)
PROFILE_JSON_ATTRIBUTES = ("properties",)
ADDITIONAL_PROFILE_FIELDS = ("subscriptions", "predictive_analytics")
JOINED_GROUP_AT = "joined_group_at"

# Extraction shape.
MEMBERSHIP_BATCH_ROWS = 5000
"""Rows collected from pages before one arrow table per table is built (`walk.batches`)."""
ARROW_ITEM_ROWS = 20_000
"""Rows of a table buffered before they are handed to dlt as one item (`rows.buffer`)."""
ARROW_ITEM_BYTES = 8 * 2**20
"""Arrow bytes of a table buffered before they are handed to dlt as one item."""
PAGES_IN_FLIGHT_PER_WORKER = 2
"""Bound of the page queue per worker: memory stays a few pages, never a whole segment."""
WALK_GC_THRESHOLDS = (50_000, 20, 100)
"""Python's gc thresholds during the membership walk (defaults 700, 10, 10): see
`walk.batches._fewer_collections`."""
KNOWN_MEMBERSHIPS_FETCH_ROWS = 50_000
"""Rows fetched at a time when reading a segment's known members from the destination."""
CHECKPOINT_POLL_SECONDS = 0.5
"""How often the walk checks its checkpoint while no page arrives (ids being listed)."""
CHECKPOINT_PAGES = 2000
"""Profile pages between two checkpoints of a run (about 2.7 minutes at Klaviyo's ceiling)."""
CHECKPOINT_MINUTES = 5.0
"""Minutes between two checkpoints of a run, whichever of the two comes first."""
PROFILE_IDS_REMEMBERED = 500_000
"""Profile ids a walk remembers so that it emits each profile once (about 100 bytes each):
past that many, it starts afresh and later copies are emitted again."""
REJOIN_LOOKUP_PROFILES = 1000
"""Walked members looked up at a time in the history, to close the stays their re-joins end."""

# Reconciliation: finding the profiles that left a segment.
RECONCILE_EVERY_HOURS = 24.0
"""Default age of a segment's last reconciliation that makes it due again: Klaviyo
recomputes segments with relative-time conditions once a day."""
RECONCILE_DUE_SLACK = 0.05
"""A reconciliation is due a little early (this share of the interval), so a job scheduled
every N hours reconciles on every run even when its start time wobbles by a few minutes."""
REFRESH_PROFILES_EVERY_HOURS = RECONCILE_EVERY_HOURS
"""Default age of a segment's last walk of every member (with attributes) that makes it due
again: equal to the reconciliation's, so that one walk does both."""
REFRESH_PROFILES_OFF = "off"
REFRESH_BY_SEGMENTS = "segments"
"""`refresh_profiles_by`: walk each segment's members again (`walk.refresh`)."""
REFRESH_BY_UPDATED = "updated"
"""`refresh_profiles_by`: read the account's profiles changed since the last read
(`/api/profiles/` by `updated`) and keep those of members (`walk.changed`)."""
CHANGED_OVERLAP_SECONDS = 1
"""The `updated` filter is strict and in whole seconds: each read starts a second below the
newest `updated` read before, so a profile changed later in that second is not missed."""
"""`refresh_profiles_every_hours="off"`: a profile's attributes are those of its last join."""
RECONCILE_ALL = "all"
"""`reconcile_segments=["all"]` forces a reconciliation of every active segment."""
