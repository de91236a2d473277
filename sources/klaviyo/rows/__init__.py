"""JSON:API resources shaped into table rows: dicts for the small tables, arrow for the big ones.

`segments` (segments, tags, segment_tags), `profiles`, `memberships` (both membership
tables), `values` (what every destination can store), `buffer` (the tables of several batches
handed to dlt as one item), `memory` (what a finished walk gives back before the load).
"""
