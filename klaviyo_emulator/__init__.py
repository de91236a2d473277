"""A local emulator of Klaviyo's segments API (segments, segment profiles, segment tags)."""

from .emulator import Emulator
from .spec.operations import ALL_SCOPES

__all__ = ["ALL_SCOPES", "Emulator"]
