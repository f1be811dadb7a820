"""What the pharmacy's tests share: the site most of them start from."""
from __future__ import annotations

import pytest

from .test_pharmacy import kits_at_site, sealed_randomisation_list


@pytest.fixture
def site(kit_world, db):
    """kit_world's 8 released kits of NCT07290946 at RH-ENT, and a sealed randomisation list."""
    sealed_randomisation_list(db)
    kits_at_site(db)
    return kit_world
