"""How long an instance stays on the metered engine after a redo (engine/wasm/flavors.py Itinerary):
twice as long after each heavy message, as short as the first after a light one (a busy machine)."""

from __future__ import annotations

from aonode.engine.wasm.budget import FUEL_RATE_MAX, quick
from aonode.engine.wasm.flavors import AWAY_FIRST, Flavor, Itinerary


def stay(trip: Itinerary, *, light: bool = False) -> int:
    """Send it away metered (a redo), then count the messages it runs there before going home."""
    trip.arrive(Flavor.METERED)
    if light:
        trip.light()
    count = 0
    while trip.next == Flavor.METERED:
        trip.ran_one()
        count += 1
    trip.go_home()
    return count


def test_heavy_redos_double_the_stay_and_a_light_one_makes_it_short_again() -> None:
    trip = Itinerary.start(has_variant=True, metered=False, restored=True, max_stay=1000)
    assert trip.next == Flavor.VARIANT
    assert [stay(trip) for _ in range(4)] == [AWAY_FIRST, 2 * AWAY_FIRST, 4 * AWAY_FIRST, 8 * AWAY_FIRST]
    assert stay(trip, light=True) == AWAY_FIRST  # this stay is cut short too
    assert [stay(trip, light=True) for _ in range(3)] == [AWAY_FIRST] * 3  # never grows while light
    assert stay(trip) == AWAY_FIRST and stay(trip) == 2 * AWAY_FIRST  # heavy again: doubling anew
    assert trip.next == Flavor.VARIANT


def test_the_quick_bound_is_the_fuel_at_the_fastest_rate() -> None:
    fuel = 20_000_000_000
    bound = fuel / FUEL_RATE_MAX
    assert quick(bound * 0.99, fuel) and not quick(bound * 1.01, fuel) and not quick(bound, fuel)
    assert quick(10**6, None)  # no limit: nothing to prove
    assert not quick(1e-9, 0) and not quick(1e-9, -5)  # no fuel: no time proves it
