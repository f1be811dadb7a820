"""The command line: `keys init` and `keys public`, `checkpoint`, `verify --checkpoint` and
`--public-key`, and a server that does not start without the key."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cellbench import checkpoints, cli
from cellbench.config import Settings

from ..conftest import SECRET

runner = CliRunner()


def run(*args, input=None):
    return runner.invoke(cli.app, list(args), input=input)


@pytest.fixture
def env(tmp_path, monkeypatch):
    """The command line on a new SQLite file, its data folder (and so its key) in this test's folder."""
    monkeypatch.setenv("CELLBENCH_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("CELLBENCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CELLBENCH_SECRET_KEY", SECRET)
    monkeypatch.setenv("CELLBENCH_DEMO", "false")
    return tmp_path


@pytest.fixture
def no_server(monkeypatch):
    import uvicorn

    started: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: started.append(kwargs))
    return started


def test_keys_init_creates_the_key_once_and_keys_public_prints_it(env):
    made = run("keys", "init")
    assert made.exit_code == 0, made.output
    key = checkpoints.load(env / "data" / "checkpoint.key")
    assert f"checkpoint key created: {key.path}" in made.output and key.public_text in made.output
    again = run("keys", "init")
    assert again.exit_code == 1 and "is never overwritten" in again.output
    assert checkpoints.load(key.path).public_text == key.public_text  # the first key is kept
    shown = run("keys", "public")
    assert shown.exit_code == 0 and shown.output.strip() == f"{key.public_text}  (key id {key.key_id})"


def test_keys_public_without_a_key_says_how_to_make_one(env):
    result = run("keys", "public")
    assert result.exit_code == 1 and "create it with `cellbench keys init`" in result.output


def test_the_server_does_not_start_without_the_key(env, no_server):
    assert run("init").exit_code == 0
    refused = run("serve")
    assert refused.exit_code == 1 and no_server == []
    assert refused.output.strip().splitlines()[-1] == (
        f"cellbench: the checkpoint key {env / 'data' / 'checkpoint.key'} does not exist: create it with "
        "`cellbench keys init` (or set CELLBENCH_CHECKPOINT_KEY to where it is)")
    assert run("keys", "init").exit_code == 0
    assert run("serve").exit_code == 0 and len(no_server) == 1


def test_the_app_factory_that_workers_run_needs_the_key_too(env):
    from cellbench.app import create_app

    assert run("init").exit_code == 0
    with pytest.raises(checkpoints.KeyProblem, match="does not exist"):
        create_app(Settings())


def test_the_demo_makes_its_own_key_and_its_chain_verifies(env, no_server):
    result = run("serve", "--demo")
    assert result.exit_code == 0, result.output
    assert (env / "data" / "checkpoint.key").exists()
    verified = run("verify")
    assert verified.exit_code == 0, verified.output
    assert "signed by the checkpoint key" in verified.output and "events/s" in verified.output


def test_checkpoint_prints_one_that_verify_accepts_and_a_contradicting_one_fails(env, tmp_path):
    assert run("init").exit_code == 0 and run("keys", "init").exit_code == 0
    made = run("users", "create", "carl", "--name", "Carl Checker", "--role", "verifier",
               input="a long password!\na long password!\n")
    assert made.exit_code == 0, made.output
    issued = run("checkpoint")
    assert issued.exit_code == 0, issued.output
    cp = checkpoints.from_json(issued.output)
    good = tmp_path / "good.json"
    good.write_text(issued.output)
    assert run("verify", "--checkpoint", str(good)).exit_code == 0
    key = checkpoints.load(env / "data" / "checkpoint.key")
    bad = tmp_path / "bad.json"
    bad.write_text(checkpoints.make(key, cp.seq, "f" * 64).to_json())
    failed = run("verify", "--checkpoint", str(good), "--checkpoint", str(bad))
    assert failed.exit_code == 2
    assert f"the chain's hash at event {cp.seq} is not the one signed" in failed.output
    assert json.loads(issued.output)["key_id"] == key.key_id


def test_verify_with_the_public_key_alone_offline(env, tmp_path, monkeypatch):
    assert run("init").exit_code == 0 and run("keys", "init").exit_code == 0
    key = checkpoints.load(env / "data" / "checkpoint.key")
    assert run("users", "create", "carl", "--name", "Carl Checker", "--role", "verifier",
               input="a long password!\na long password!\n").exit_code == 0
    monkeypatch.setenv("CELLBENCH_CHECKPOINT_KEY", str(tmp_path / "elsewhere" / "checkpoint.key"))  # no key here
    checkpoints.install(None)
    assert run("verify", "--public-key", key.public_text).exit_code == 0
    other = checkpoints.create(tmp_path / "other.key")
    failed = run("verify", "--public-key", other.public_text)
    assert failed.exit_code == 2 and "does not carry the checkpoint key's signature" in failed.output
