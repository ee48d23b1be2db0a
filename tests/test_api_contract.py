"""The API against its own OpenAPI document, with Schemathesis, authenticated as an admin.

Two phases on one seeded database (see ``contract_cases``):

* known good: every operation gets one request built from the seed data, which must succeed;
* fuzzing: every operation gets schema-generated requests, valid and invalid ones, with a
  fixed seed and a bounded number of examples; path ids and ids in bodies are partly drawn
  from the seed data, so generated requests also get past the 404s.

Every response of both phases goes through every check Schemathesis has (no 5xx, documented
status codes, bodies, content types and headers, invalid data refused, unsupported methods
answered 405 with a correct Allow, ...) but those listed in ``NOT_APPLICABLE`` with their
reason.  Every operation must answer 2xx at least once.

Both phases run on PostgreSQL; SQLite gets the known-good phase only (fuzzing it as well
would double the run time for requests that are the same).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode, checks
from schemathesis.core import NOT_SET
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tecnorev.api import create_app
from tecnorev.testing.core import fresh_database, migrate
from tecnorev.testing.inventory import LEDGER_MISMATCHES

from .contract_cases import KNOWN_GOOD, Call, World

pytestmark = pytest.mark.slow

MAX_EXAMPLES = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 5}
# Operations that check a password (argon2, slow on purpose) get fewer examples.
SLOW_OPERATIONS = {
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/password"),
    ("POST", "/api/v1/auth/users"),
}
SLOW_MAX_EXAMPLES = 5
checks.load_all_checks()
# Every check Schemathesis has, but those that cannot judge this API, each with its reason.
NOT_APPLICABLE = {
    # expects a 2xx for any valid request: a valid request may still break a rule of the
    # stored data (an order for more than the stock, an id that does not exist)
    "positive_data_acceptance": "valid requests are refused by the state of the data",
    # stateful checks: they need links between operations (OpenAPI links), which this
    # document does not declare; Schemathesis runs them only in its stateful phase
    "use_after_free": "needs OpenAPI links (a stateful run)",
    "ensure_resource_availability": "needs OpenAPI links (a stateful run)",
    "object_level_authorization": "needs two authentication contexts of its configuration",
}
CHECKS = [c for c in checks.CHECKS.get_all() if c.__name__ not in NOT_APPLICABLE]
# Operations that end logins: each request gets a login of its own, never the admin's.
ENDS_LOGINS = {("POST", "/api/v1/auth/logout"), ("POST", "/api/v1/auth/password")}
CASES_FILE = "tests/contract_cases.py"
# Body fields whose generated value is sometimes replaced by a seed value of this name.
BODY_FIELDS = {
    "branch_id": "branch_id",
    "from_branch_id": "branch_id",
    "to_branch_id": "branch_id",
    "product_id": "product_id",
    "order_id": "order_id",
    "category_id": "category_id",
    "parent_id": "category_id",
    "coupon_code": "coupon_code",
}

Key = tuple[str, str]


@dataclass
class Report:
    backend: str
    operations: list[Key]
    statuses: dict[Key, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    # one example per (operation, kind of failure), and how often that failure came up
    failures: dict[tuple[Key, str], list[Any]] = field(default_factory=dict)
    fuzzed: int = 0
    known_good: int = 0
    ledger_mismatches: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, key: Key, kind: str, detail: str) -> None:
        entry = self.failures.setdefault((key, kind), [detail, 0])
        entry[1] += 1

    def listing(self, *kinds: str) -> str:
        lines = []
        for ((method, path), kind), (detail, count) in sorted(self.failures.items()):
            if kind.split(":")[0] in kinds:
                lines.append(f"\n{method} {path} [{kind}] x{count}\n{detail}")
        return "\n".join(lines)


def _describe(case: Case, status: int | str, body_text: str, problem: str = "") -> str:
    """The request (without its token) and the response, to reproduce a failure."""
    body = None if case.body is NOT_SET else case.body
    sent = {
        "path": case.formatted_path,
        "query": case.query or None,
        "body": body,
        "idempotency-key": (case.headers or {}).get("Idempotency-Key"),
    }
    sent = {k: v for k, v in sent.items() if v is not None}
    text = json.dumps(sent, default=str, ensure_ascii=False)
    lines = [f"  request: {_cut(text, 600)}", f"  response {status}: {_cut(body_text, 400)}"]
    if problem:
        lines.append("  " + _cut(problem, 800).replace("\n", "\n  "))
    return "\n".join(lines)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _send(report: Report, key: Key, case: Case) -> Any:
    """Call, record the status, run the checks; return the response (None if the call
    raised)."""
    try:
        response = case.call()
    except Exception as exc:  # the app raised through the transport: a 500 to a client
        report.fail(key, "5xx:exception", _describe(case, "raised", f"{type(exc).__name__}: {exc}"))
        return None
    report.statuses[key][response.status_code] += 1
    try:
        case.validate_response(response, checks=CHECKS)
    except FailureGroup as group:
        for failure in group.exceptions:
            kind = "5xx" if response.status_code >= 500 else "schema"
            detail = _describe(case, response.status_code, response.text, str(failure))
            report.fail(key, f"{kind}:{failure.title}", detail)
    return response


def _combos(path_parameters: list[str], known: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Path parameter sets made of seed ids (pairing the lists in order)."""
    lists = [known.get(name) for name in path_parameters]
    if not path_parameters or any(not values for values in lists):
        return []
    width = max(len(values) for values in lists if values)
    return [
        {name: values[i % len(values)] for name, values in zip(path_parameters, lists, strict=True)}
        for i in range(width)
    ]


def _with_seed_values(value: Any, known: dict[str, list[Any]], data: st.DataObject) -> Any:
    """``value`` (a generated body) with some of its id fields swapped for seed values, so a
    generated order names a real branch and product, a shipment a real order..."""
    if isinstance(value, list):
        return [_with_seed_values(item, known, data) for item in value]
    if not isinstance(value, dict):
        return value
    swapped = {}
    for name, item in value.items():
        choices = known.get(BODY_FIELDS.get(name, ""))
        if choices and isinstance(item, int | str) and data.draw(st.booleans()):
            swapped[name] = data.draw(st.sampled_from(choices))
        else:
            swapped[name] = _with_seed_values(item, known, data)
    return swapped


def _examples(
    report: Report,
    world: World,
    key: Key,
    strategy: st.SearchStrategy,
    max_examples: int,
    *,
    known: dict[str, list[Any]] | None,
) -> None:
    """Send ``max_examples`` generated cases; ``known`` (positive cases only) seeds bodies."""

    @settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, data=st.data())
    def run(case: Case, data: st.DataObject) -> None:
        if known is not None and isinstance(case.body, dict | list):
            case.body = _with_seed_values(case.body, known, data)
        login = world.login_header() if key in ENDS_LOGINS else world.admin
        case.headers = {**(case.headers or {}), **login}
        report.fuzzed += 1
        _send(report, key, case)

    try:
        run()
    except Unsatisfiable:
        # an operation with nothing to negate (no parameters, no body) has no negative cases
        if known is not None:
            raise


def _operations(schema: OpenApiSchema) -> dict[Key, Any]:
    found = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        found[(operation.method.upper(), operation.path)] = operation
    return found


def _fuzz(report: Report, world: World, schema: OpenApiSchema) -> None:
    known = world.known_values()
    for key, operation in _operations(schema).items():
        names = [p.name for p in operation.path_parameters]
        for mode, max_examples in MAX_EXAMPLES.items():
            positive = mode is GenerationMode.POSITIVE
            # seed ids first: Hypothesis draws the first alternatives more often
            strategies = [
                operation.as_strategy(generation_mode=mode, path_parameters=combo)
                for combo in (_combos(names, known) if positive else [])
            ]
            strategies.append(operation.as_strategy(generation_mode=mode))
            _examples(
                report,
                world,
                key,
                st.one_of(strategies),
                min(max_examples, SLOW_MAX_EXAMPLES) if key in SLOW_OPERATIONS else max_examples,
                known=known if positive else None,
            )
        me = world.client.get("/api/v1/auth/me", headers=world.admin)
        assert me.status_code == 200, f"fuzzing {key} locked the admin out: {me.text}"


def _known_good(report: Report, world: World, schema: OpenApiSchema) -> None:
    operations = _operations(schema)
    for key, build in KNOWN_GOOD.items():
        if key not in operations:
            continue  # reported by test_every_known_good_case_names_an_operation
        try:
            call: Call = build(world)
        except AssertionError as exc:  # a fresh object it needs could not be made
            report.fail(key, "known-good", f"  could not prepare the case: {exc}")
            continue
        kwargs: dict[str, Any] = {
            "path_parameters": call.path_parameters,
            "query": call.query,
            "headers": world.admin if call.headers is None else call.headers,
        }
        if call.body is not None:
            kwargs["body"] = call.body
            kwargs["media_type"] = call.media_type or "application/json"
        case = operations[key].Case(**kwargs)
        report.known_good += 1
        response = _send(report, key, case)
        if response is not None and not 200 <= response.status_code < 300:
            report.fail(key, "known-good", _describe(case, response.status_code, response.text))


@pytest.fixture(
    scope="module",
    params=[pytest.param("postgresql", marks=pytest.mark.postgres), "sqlite"],
)
def contract(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Seed, run the phases, and hand the report to the tests below."""
    backend = request.param
    with fresh_database(backend, tmp_path_factory.mktemp("contract")) as url:
        migrate(url)
        app = create_app(database_url=url)
        engine = app.state.engine
        try:
            with TestClient(app) as client:
                world = World(client, engine)
                schema = schemathesis.openapi.from_asgi("/openapi.json", app)
                report = Report(backend, list(_operations(schema)))
                _known_good(report, world, schema)
                if backend == "postgresql":
                    _fuzz(report, world, schema)
                with engine.connect() as conn:
                    report.ledger_mismatches = [
                        dict(row._mapping) for row in conn.execute(LEDGER_MISMATCHES)
                    ]
                yield report
        finally:
            engine.dispose()


def test_every_operation_has_a_known_good_case(contract: Report) -> None:
    missing = [f"{m} {p}" for m, p in contract.operations if (m, p) not in KNOWN_GOOD]
    assert not missing, f"operations without a known-good case in {CASES_FILE}: {missing}"


def test_every_known_good_case_names_an_operation(contract: Report) -> None:
    stale = [f"{m} {p}" for m, p in KNOWN_GOOD if (m, p) not in contract.operations]
    assert not stale, f"known-good cases in {CASES_FILE} for no operation: {stale}"


def test_known_good_cases_succeed(contract: Report) -> None:
    assert not contract.listing("known-good"), contract.listing("known-good")


def test_no_server_errors(contract: Report) -> None:
    assert not contract.listing("5xx"), contract.listing("5xx")


def test_responses_match_their_schema(contract: Report) -> None:
    assert not contract.listing("schema"), contract.listing("schema")


def test_every_operation_reaches_a_2xx(contract: Report) -> None:
    never = {
        f"{m} {p}": dict(contract.statuses[(m, p)])
        for m, p in contract.operations
        if not any(200 <= s < 300 for s in contract.statuses[(m, p)])
    }
    assert not never, f"operations that never answered 2xx (statuses seen): {never}"
    if contract.backend == "postgresql":
        assert contract.fuzzed >= 10 * len(contract.operations), "the fuzzing phase ran little"


def test_stock_still_matches_the_ledger(contract: Report) -> None:
    """Whatever the requests did, each branch's stock is the sum of its movements."""
    assert not contract.ledger_mismatches, contract.ledger_mismatches
