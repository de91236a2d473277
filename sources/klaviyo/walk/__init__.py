"""The membership walk: which segments, walked by whom, batched how, reconciled against what.

`catalog` reads the segment list of a run, `plan` decides each segment's walk, `worker` walks
one segment in a thread, `events` is what workers report, `batches` runs the workers and
batches their events for dlt, `reconcile` finds what left, `destination` reads back what
earlier runs loaded.
"""
