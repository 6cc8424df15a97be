"""Which build of an image runs a message, and when an instance moves between builds.

All three leave the same linear memory byte for byte; they differ in speed and in what they can do.
An instance has a home: the variant when the image has one, else the image itself (or always the
metered engine, when asked). While the variant is still being prepared (builds.py) the home is the
metered engine: on a machine busy preparing it a wall-clock deadline says little, and fuel decides
without redoing anything; when the preparation ends, the instance moves home between two messages.
A fresh instance starts on the image itself (constructors, the spawn). A message the home cannot
finish is redone elsewhere: one that must suspend (WeaveDrive) on the image itself, one whose time
cannot prove it stayed under its Compute-Limit on the metered engine. The instance then stays away
for 4 messages, then 8, 16, ... (up to a checkpoint interval), so a process that suspends often stops
switching back and forth. A message redone metered that ran there under the time bound it had passed
on the fast engine was not heavy: the machine was busy (or a snapshot's background work shared its
memory bandwidth); the next stay is 4 again, not twice as long, else a few such moments on a shared
machine kept a process metered (slower) for up to a checkpoint interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

AWAY_FIRST = 4  # messages a process stays away from home after one needed it (then 8, 16, ...)


class Flavor(StrEnum):
    ORIGINAL = "original"  # the image itself, on an engine with an epoch deadline
    VARIANT = "variant"  # its fast variant (transform/variant.py), on an engine that checks nothing
    METERED = "metered"  # the image itself, counting fuel: the deterministic Compute-Limit verdict


def home_for(*, has_variant: bool, preparing: bool, metered: bool) -> Flavor:
    """Where an instance of an image belongs (see the module docstring)."""
    if metered or (preparing and not has_variant):
        return Flavor.METERED
    return Flavor.VARIANT if has_variant else Flavor.ORIGINAL


@dataclass
class Itinerary:
    """Where an instance is (`current`), where it belongs (`home`), and how long it stays away."""

    home: Flavor
    current: Flavor
    max_stay: int
    away_left: int = 1  # messages still to run away from home before going back
    away_stay: int = AWAY_FIRST  # the length of the next stay away

    @classmethod
    def start(
        cls, *, has_variant: bool, metered: bool, restored: bool, max_stay: int, preparing: bool = False
    ) -> Itinerary:
        home = home_for(has_variant=has_variant, preparing=preparing, metered=metered)
        current = Flavor.ORIGINAL if home == Flavor.VARIANT and not restored else home
        return cls(home, current, max_stay)

    @property
    def next(self) -> Flavor:
        """The flavour the next message runs on."""
        return self.home if self.away_left <= 0 else self.current

    @property
    def away(self) -> bool:
        return self.current != self.home

    @property
    def stay_over(self) -> bool:
        """Away, with no message left to run there: the next message goes home."""
        return self.away and self.away_left <= 0

    def arrive(self, flavor: Flavor) -> None:
        """Now on `flavor` (which a message needed); a stay away lasts twice as long as the last one."""
        self.current = flavor
        if self.away:
            self.away_left = self.away_stay
            self.away_stay = min(2 * self.away_stay, self.max_stay)

    def light(self) -> None:
        """The message that sent it away was not heavy (see the module docstring): the next stay away
        is as short as the first, and so is this one."""
        self.away_left = min(self.away_left, AWAY_FIRST)
        self.away_stay = AWAY_FIRST

    def ran_one(self) -> None:
        if self.away:
            self.away_left -= 1

    def rehome(self, home: Flavor) -> None:
        """The image's builds changed (its variant is ready): `home` from now on. An instance at the old
        home goes to the new one before its next message; one away stays its stay out."""
        if self.current == self.home:
            self.away_left = 0
        self.home = home

    def go_home(self) -> None:
        self.current = self.home
