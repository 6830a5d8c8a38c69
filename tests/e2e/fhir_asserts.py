"""Assertions shared by the FHIR end-to-end tests."""

import datetime
import email.utils
import re

# http://hl7.org/fhir/R4/valueset-issue-type.html
ISSUE_TYPES = {
    "invalid", "structure", "required", "value", "invariant", "security", "login", "unknown", "expired",
    "forbidden", "suppressed", "processing", "not-supported", "duplicate", "multiple-matches", "not-found",
    "deleted", "too-long", "code-invalid", "extension", "too-costly", "business-rule", "conflict", "transient",
    "lock-error", "no-store", "exception", "timeout", "incomplete", "throttled", "informational",
}
ISSUE_SEVERITIES = {"fatal", "error", "warning", "information"}
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def outcome(resp, status=None):
    """Asserts `resp` carries an OperationOutcome (with the given status) and returns it."""
    if status is not None:
        statuses = status if isinstance(status, (set, tuple, list)) else {status}
        assert resp.status_code in statuses, f"expected {statuses}, got {resp.status_code}: {resp.text[:500]}"
    assert "json" in resp.headers.get("Content-Type", ""), resp.headers
    body = resp.json()
    assert body.get("resourceType") == "OperationOutcome", body
    issues = body.get("issue")
    assert isinstance(issues, list) and issues, body
    for issue in issues:
        assert issue.get("severity") in ISSUE_SEVERITIES, issue
        assert issue.get("code") in ISSUE_TYPES, issue
    return body


def error_outcome(resp, status):
    """An OperationOutcome with at least one error or fatal issue."""
    body = outcome(resp, status)
    assert any(i["severity"] in ("error", "fatal") for i in body["issue"]), body
    return body


def etag_version(resp):
    """The version in a weak ETag `W/"n"`."""
    etag = resp.headers.get("ETag")
    assert etag, f"no ETag header: {resp.status_code} {resp.headers}"
    m = re.fullmatch(r'W/"([^"]+)"', etag)
    assert m, f"ETag is not weak: {etag!r}"
    return m.group(1)


def instant(value):
    """Parses a FHIR instant."""
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def http_date(value):
    return email.utils.parsedate_to_datetime(value)


def location_id_and_version(resp, resource_type):
    """The id and version in a Location `…/{type}/{id}/_history/{vid}`."""
    location = resp.headers.get("Location") or resp.headers.get("Content-Location")
    assert location, f"no Location header: {resp.headers}"
    m = re.search(rf"(?:^|/){resource_type}/([A-Za-z0-9\-.]{{1,64}})/_history/([A-Za-z0-9\-.]+)$", location)
    assert m, f"Location is not [base]/{resource_type}/[id]/_history/[vid]: {location}"
    return m.group(1), m.group(2)


def bundle_entries(bundle, bundle_type="history"):
    assert bundle.get("resourceType") == "Bundle", bundle
    assert bundle.get("type") == bundle_type, bundle.get("type")
    return bundle.get("entry", [])


def link(bundle, relation):
    for item in bundle.get("link", []):
        if item.get("relation") == relation:
            return item.get("url")
    return None


def all_history(fhir, path, params=None, max_pages=200):
    """Follows `next` links from `path` and returns (entries, pages)."""
    entries, pages = [], []
    resp = fhir.get(path, params=params)
    while True:
        assert resp.status_code == 200, resp.text[:500]
        bundle = resp.json()
        page = bundle_entries(bundle)
        pages.append(page)
        entries.extend(page)
        nxt = link(bundle, "next")
        if not nxt:
            return entries, pages
        assert len(pages) < max_pages, "history paging does not end"
        resp = fhir.get(nxt)


def entry_version(entry):
    """The version an history entry records: the resource's meta.versionId, else the response etag."""
    resource = entry.get("resource")
    if resource and resource.get("meta", {}).get("versionId"):
        return resource["meta"]["versionId"]
    etag = entry.get("response", {}).get("etag", "")
    m = re.fullmatch(r'W/"([^"]+)"', etag)
    assert m, f"history entry has neither meta.versionId nor a weak etag: {entry}"
    return m.group(1)
