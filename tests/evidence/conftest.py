"""Evidence tests build their packets once per module, so the key is installed for the module: the
session's key (every world's heads are signed with it), with its log in a folder of the module's own."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from cellbench import checkpoints


@pytest.fixture(scope="module", autouse=True)
def checkpoint_key(session_checkpoint_key, tmp_path_factory) -> Iterator[checkpoints.Key]:
    before = checkpoints.installed()
    key = dataclasses.replace(session_checkpoint_key,
                              path=tmp_path_factory.mktemp("key") / checkpoints.KEY_FILE_NAME)
    checkpoints.install(key)
    yield key
    checkpoints.install(before)
