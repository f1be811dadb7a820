"""Schemathesis over the API's own OpenAPI document, against the demo, as five roles.

Every operation of /api/v1/openapi.json gets generated requests (valid ones and ones that break
the schema) with a bearer token of supply, pharmacist, investigator, QA and monitor, in-process
(ASGI). Two checks: no 5xx (not_a_server_error), and every answer is what the document says
(response_schema_conformance: status documented, body of the documented shape). Seeded
(derandomize) and bounded: FUZZ_EXAMPLES cases per operation and mode, each sent as every role, and FUZZ_SECONDS
in all; operations left when the time runs out are reported (the whole document takes about 2
minutes on one core here).

    FUZZ_EXAMPLES=10 pytest tests/test_openapi_fuzz.py -n 0 -s     # a longer run, by hand
"""
from __future__ import annotations

import contextlib
import os
import time
from collections import Counter

import hypothesis
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from cellbench import users

ROLES = ("supply", "pharmacist", "investigator", "qa", "monitor")  # demo usernames
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "4"))
SECONDS = float(os.environ.get("FUZZ_SECONDS", "150"))
CHECKS = [not_a_server_error, response_schema_conformance]


def tokens(db) -> dict[str, str]:
    with db.write() as s:
        return {name: users.create_token(s, users.cli_actor(), users.by_username(s, name), "schemathesis")
                for name in ROLES}


def fuzz(app, bearer: dict[str, str], examples: int, seconds: float) -> tuple[Counter[str], list[str], int]:
    """Runs the cases; returns the statuses seen, the failures (one line each) and the operations
    left for lack of time."""
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app,
                                            headers={"Authorization": f"Bearer {bearer[ROLES[0]]}"})
    operations = [result.ok() for result in schema.get_all_operations()]
    statuses: Counter[str] = Counter()
    failures: list[str] = []
    stop = time.monotonic() + seconds
    left = 0
    for operation in operations:
        if time.monotonic() > stop:
            left += 1
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            with contextlib.suppress(hypothesis.errors.Unsatisfiable):
                _cases(operation, mode, bearer, examples, statuses, failures)()
    return statuses, failures, left


def _cases(operation, mode, bearer: dict[str, str], examples: int, statuses: Counter[str], failures: list[str]):
    """One seeded Hypothesis run over one operation; each case is sent as every role."""

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                         phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case):
        for role, token in bearer.items():
            headers = {"Authorization": f"Bearer {token}"}
            response = case.call(headers=headers)
            statuses[str(response.status_code)] += 1
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except Exception as failure:  # collected, asserted by the test
                first = " / ".join(str(failure).strip().splitlines()[0:3])
                failures.append(f"{role} {operation.label} -> {response.status_code}: {first}")

    return run


def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_document(demo_trial_world, app):
    statuses, failures, left = fuzz(app, tokens(demo_trial_world), EXAMPLES, SECONDS)
    print(f"\nschemathesis: {sum(statuses.values())} requests, statuses {dict(sorted(statuses.items()))}, "
          f"{len(failures)} failures, {left} operations left for lack of time")
    for line in sorted(set(failures)):
        print("  ", line)
    assert not failures
    assert statuses["200"] and statuses["422"]  # it reached the data, and it was refused bad input
