"""The emulated account's state: segments, tags, profiles, memberships, ids and generated data.

Nothing here knows HTTP or how a response looks, besides a profile's attributes, which are
generated as the JSON the API serves.
"""
