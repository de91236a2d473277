"""The emulator on the wire: the HTTP server, the dispatcher that runs Klaviyo's checks in order,
the rate limiter, fault injection and request counters."""
