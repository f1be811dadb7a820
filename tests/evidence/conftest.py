"""Every evidence test signs with a checkpoint key of its own, made in a temporary folder and
installed for the module (the one installed before, if any, is put back after)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from cellbench import checkpoints


@pytest.fixture(scope="module", autouse=True)
def checkpoint_key(tmp_path_factory) -> Iterator[checkpoints.Key]:
    before = checkpoints.installed()
    key = checkpoints.create(tmp_path_factory.mktemp("key") / checkpoints.KEY_FILE_NAME)
    checkpoints.install(key)
    yield key
    checkpoints.install(before)
