"""Klaviyo's REST API as the source uses it.

`endpoints` says what each request looks like at a revision, `client` sends it and pages
through the answers, `errors` turns answers into retries or errors, `ratelimit` keeps within
Klaviyo's limits, `decoding` turns bodies into storable values.
"""
