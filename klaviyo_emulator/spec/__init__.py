"""What Klaviyo's API is: its operations, its revisions, its resources and its time formats.

Nothing here knows the emulated account or HTTP; every other part of the emulator reads it.
"""
