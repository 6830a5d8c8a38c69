"""The search correctness gate: fhirlake's search results against the independent oracle.

One datastore is loaded with the differential dataset (dataset.py) by PUT, then every search of
queries.py is sent as `GET /datastore/{id}/r4/{Type}?{query}` with SigV4 and compared with
oracle.py: the match set (`must ⊆ matches ⊆ may`, every page collected through `next` links, no
match twice), the `_include`/`_revinclude` entries, the `_sort` order, and `total` when
`_total=accurate` is asked. `test_coverage` checks offline that the searches exercise every
parameter type, modifier, prefix, chain, `_has` and result parameter the suite promises.
"""

import concurrent.futures

import pytest

import dataset
import oracle as oracle_mod
import queries
from fhir_asserts import link
from sigv4_http import SigV4Http

LOAD_WORKERS = 4
MAX_PAGES = 500
DATA = dataset.cached_resources()
SEARCHES = queries.searches(DATA)

# Loading ~60k resources and evaluating the searches takes minutes, not the suite's 180 s.
pytestmark = pytest.mark.timeout(1800)


class Loaded:
    """The loaded datastore: its client, the oracle over what was stored, the placeholders."""

    def __init__(self, fhir, oracle, placeholders):
        self.fhir = fhir
        self.oracle = oracle
        self.placeholders = placeholders


@pytest.fixture(scope="module")
def loaded(server, new_datastore):
    ds = new_datastore("search-differential")
    fhir = SigV4Http(ds.endpoint, server.access_key, server.secret_key, server.region)

    def put(resource):
        resp = fhir.put(f"{resource['resourceType']}/{resource['id']}", json=resource)
        assert resp.status_code in (200, 201), f"PUT {resource['resourceType']}/{resource['id']}: " \
                                               f"{resp.status_code} {resp.text[:300]}"
        return resp.json().get("meta", {})

    with concurrent.futures.ThreadPoolExecutor(LOAD_WORKERS) as pool:
        metas = list(pool.map(put, DATA))
    stored = []
    for resource, meta in zip(DATA, metas):
        # The server owns versionId and lastUpdated; everything else is what was sent.
        merged = dict(resource)
        merged["meta"] = {**resource.get("meta", {}),
                          **{k: meta[k] for k in ("versionId", "lastUpdated") if k in meta}}
        stored.append(merged)
    updated = sorted(r["meta"]["lastUpdated"] for r in stored if "lastUpdated" in r["meta"])
    assert len(updated) == len(stored), "the server returned resources without meta.lastUpdated"
    placeholders = {
        "lastUpdated:min": updated[0],
        "lastUpdated:median": updated[len(updated) // 2],
        "lastUpdated:max": updated[-1],
    }
    return Loaded(fhir, oracle_mod.Oracle(stored), placeholders)


def _fetch_all(fhir, search):
    """Every page of a search: (match keys in order, include keys, first bundle, page count)."""
    resp = fhir.get(f"{search.resource_type}?{search.encoded_query()}")
    matches, includes, first, pages = [], set(), None, 0
    while True:
        assert resp.status_code == 200, f"{resp.status_code} {resp.text[:500]}"
        bundle = resp.json()
        assert bundle.get("resourceType") == "Bundle" and bundle.get("type") == "searchset", bundle.get("type")
        first = first or bundle
        pages += 1
        for entry in bundle.get("entry", []):
            resource = entry.get("resource", {})
            k = oracle_mod.key(resource)
            mode = entry.get("search", {}).get("mode", "match")
            if mode == "match":
                matches.append(k)
            elif mode == "include":
                includes.add(k)
        nxt = link(bundle, "next")
        if not nxt:
            return matches, includes, first, pages
        assert pages < MAX_PAGES, "paging does not end"
        resp = fhir.get(nxt)


def _describe(keys, limit=10):
    keys = sorted(keys)
    more = f" … and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


@pytest.mark.parametrize("search", SEARCHES, ids=[s.test_id() for s in SEARCHES])
def test_search_matches_the_oracle(loaded, search):
    search = search.resolved(loaded.placeholders)
    expected = loaded.oracle.search(search.resource_type, list(search.params))
    matches, includes, first, pages = _fetch_all(loaded.fhir, search)

    duplicates = sorted({k for k in matches if matches.count(k) > 1})
    assert not duplicates, f"matches returned more than once (across pages): {_describe(duplicates)}"
    got = set(matches)
    missing = expected.must - got
    extra = got - expected.may
    assert not missing and not extra, (
        f"{search.test_id()}: {len(got)} matches, oracle expects {len(expected.must)}"
        f"{'' if expected.exact else f' to {len(expected.may)}'}\n"
        f"missing: {_describe(missing)}\nunexpected: {_describe(extra)}")

    if expected.count is not None and len(got) > expected.count:
        assert pages > 1, f"_count={expected.count} but {len(got)} matches came in one page"

    want_includes = loaded.oracle.includes(expected, got) if (expected.include or expected.revinclude) else set()
    got_includes = includes - got
    assert got_includes == want_includes, (
        f"includes: missing {_describe(want_includes - got_includes)}; "
        f"unexpected {_describe(got_includes - want_includes)}")

    violation = loaded.oracle.sort_violation(expected, matches)
    assert violation is None, violation

    if expected.total == "accurate":
        assert first.get("total") == len(got), f"total {first.get('total')} for {len(got)} matches"


@pytest.mark.parametrize("search", queries.REFUSED, ids=[s.test_id() for s in queries.REFUSED])
def test_refused_search(loaded, search):
    """A search the oracle refuses (SearchError) gets a 400 and an OperationOutcome (search.html#errors)."""
    with pytest.raises(oracle_mod.SearchError):
        loaded.oracle.search(search.resource_type, list(search.params))
    resp = loaded.fhir.get(f"{search.resource_type}?{search.encoded_query()}")
    assert resp.status_code == 400, f"{resp.status_code} {resp.text[:500]}"
    assert resp.json().get("resourceType") == "OperationOutcome", resp.text[:500]


def test_enough_searches():
    assert len(SEARCHES) >= 300, len(SEARCHES)
    assert len({s.test_id() for s in SEARCHES}) == len(SEARCHES), "two searches have the same test id"


def test_coverage():
    """Every parameter type, modifier, prefix, chain and _has depth and result form is exercised."""
    counts = queries.coverage(SEARCHES)
    missing = [f for f in queries.REQUIRED_FEATURES if counts[f] == 0]
    assert not missing, f"no generated search exercises: {missing}"


def test_most_searches_expect_matches():
    """A suite of empty answers would prove little: most searches must expect some match."""
    offline = oracle_mod.Oracle(DATA)
    placeholders = {"lastUpdated:min": "2000-01-01", "lastUpdated:median": "2000-01-01",
                    "lastUpdated:max": "2000-01-01"}
    nonempty = 0
    for s in SEARCHES:
        expected = offline.search(s.resource_type, list(s.resolved(placeholders).params))
        nonempty += bool(expected.must)
    assert nonempty >= 0.85 * len(SEARCHES), f"only {nonempty} of {len(SEARCHES)} searches expect matches"
