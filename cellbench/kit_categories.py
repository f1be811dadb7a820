"""The categories of a place's accountability balance, and the kit states in each.

    released = in stock + in transit + dispensed + not administered + returned + withdrawn
               + damaged + missing + destroyed          (temporarily unavailable shown apart)

Kit states are the same for both arms, so a balance holds no arm. The categories live apart from
accountability (which reads them) so that the running counts (kit_counts.py, site_figures.py),
which accountability imports, can keep a site's figures by category without importing it back.
"""
from __future__ import annotations

from .models import KitState

# Categories of the balance, in the order they are shown, and the kit states in each.
CATEGORIES: dict[str, tuple[str, frozenset[KitState]]] = {
    "awaiting_release": ("Awaiting release", frozenset({KitState.packaged, KitState.awaiting_release,
                                                         KitState.site_awaiting_release})),
    "in_stock": ("In stock", frozenset({KitState.released, KitState.at_site, KitState.allocated})),
    "in_transit": ("In transit", frozenset({KitState.in_transit, KitState.transit_awaiting_release})),
    "dispensed": ("Dispensed", frozenset({KitState.dispensed, KitState.in_preparation, KitState.administered})),
    "not_administered": ("Not administered", frozenset({KitState.not_administered})),
    "returned": ("Returned", frozenset({KitState.returned})),
    "withdrawn": ("Withdrawn", frozenset({KitState.withdrawn})),
    "damaged": ("Damaged", frozenset({KitState.damaged})),
    "missing": ("Missing", frozenset({KitState.missing})),
    "destroyed": ("Destroyed", frozenset({KitState.destroyed})),
    "quarantined": ("Temporarily unavailable", frozenset({KitState.quarantined})),
}
_CATEGORY_OF = {state: name for name, (_, states) in CATEGORIES.items() for state in states}
RELEASED_TERMS = ("in_stock", "in_transit", "dispensed", "not_administered", "returned", "withdrawn", "damaged",
                  "missing", "destroyed")
# What is physically kept at the place, and so what a physical count must find.
ON_HAND_TERMS = ("awaiting_release", "in_stock", "quarantined", "not_administered", "returned", "withdrawn", "damaged")


def category_of(state: str | KitState) -> str | None:
    """None for a planned kit: a number with nothing in it yet is not accounted for."""
    if (name := _CATEGORY_OF.get(state)) is not None:  # type: ignore[arg-type]
        return name  # a state's value finds its category as the state does (a str enum): no conversion per row
    return _CATEGORY_OF.get(KitState(state))  # planned, or not a state at all (refused here)


def balance(counts: dict[str, int]) -> dict[str, int]:
    """Category counts with the released total and what should be on hand."""
    full = {name: counts.get(name, 0) for name in CATEGORIES}
    full["released"] = sum(full[name] for name in RELEASED_TERMS)
    full["on_hand"] = sum(full[name] for name in ON_HAND_TERMS)
    return full

