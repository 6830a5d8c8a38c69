use std::collections::HashMap;

use base64::Engine;
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

use super::references::{
    conditional_reference_query, conditional_references, is_conditional_reference, placeholder_references, rewrite_references,
};
use super::request::etag_version;
use super::response::etag;
use super::*;

const BASE: &str = "http://example.org/fhir";

fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

fn req(method: &str, url: &str) -> Value {
    json!({"request": {"method": method, "url": url}})
}

fn with_resource(mut entry: Value, resource: Value) -> Value {
    entry["resource"] = resource;
    entry
}

fn with_full_url(mut entry: Value, full_url: &str) -> Value {
    entry["fullUrl"] = json!(full_url);
    entry
}

/// Parses one entry as a batch and returns its request, panicking (in the test) on an invalid entry.
fn one(entry: Value) -> EntryRequest {
    let parsed = parse(&bundle("batch", vec![entry]), BASE).expect("batch parses");
    match &parsed.entries[0].plan {
        Plan::Request(r) => (**r).clone(),
        Plan::Invalid(issues) => panic!("entry invalid: {issues:?}"),
    }
}

/// Parses one entry as a batch and returns its issues, panicking (in the test) when it is valid.
fn one_invalid(entry: Value) -> Vec<Issue> {
    let parsed = parse(&bundle("batch", vec![entry]), BASE).expect("batch parses");
    match &parsed.entries[0].plan {
        Plan::Invalid(issues) => issues.clone(),
        Plan::Request(r) => panic!("entry valid: {r:?}"),
    }
}

fn target(method: &str, url: &str) -> Target {
    let mut entry = req(method, url);
    match method {
        "POST" | "PUT" => {
            let rt = url.split(['/', '?']).next().unwrap();
            let mut resource = json!({"resourceType": rt});
            if method == "PUT" && !url.contains('?') {
                resource["id"] = json!(url.split('/').nth(1).unwrap());
            }
            entry = with_resource(entry, resource);
        }
        "PATCH" => entry = with_resource(entry, json!({"resourceType": "Parameters", "parameter": []})),
        _ => {}
    }
    one(entry).target
}

fn target_error(method: &str, url: &str) -> Issue {
    let issues = one_invalid(req(method, url));
    issues.into_iter().find(|i| i.expression == ["Bundle.entry[0].request.url"]).expect("an issue on request.url")
}

fn q(pairs: &[(&str, &str)]) -> Query {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn locations(issues: &[Issue]) -> Vec<&str> {
    issues.iter().flat_map(|i| i.expression.iter().map(String::as_str)).collect()
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The R4 example transaction (`bundle-transaction.json`), entries in its order.
fn r4_example() -> Value {
    let narrative = json!({"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Some narrative</div>"});
    let patient = |extra: Value| {
        let mut p = json!({"resourceType": "Patient", "text": narrative, "active": true,
            "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}], "gender": "male", "birthDate": "1974-12-25"});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    };
    json!({
      "resourceType": "Bundle", "id": "bundle-transaction", "meta": {"lastUpdated": "2014-08-18T01:43:30Z"}, "type": "transaction",
      "entry": [
        {"fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a", "resource": patient(json!({})),
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059",
         "resource": patient(json!({"identifier": [{"system": "http:/example.org/fhir/ids", "value": "234234"}]})),
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=http:/example.org/fhir/ids|234234"}},
        {"fullUrl": "http://example.org/fhir/Patient/123", "resource": patient(json!({"id": "123"})),
         "request": {"method": "PUT", "url": "Patient/123"}},
        {"fullUrl": "urn:uuid:74891afc-ed52-42a2-bcd7-f13d9b60f096",
         "resource": patient(json!({"identifier": [{"system": "http:/example.org/fhir/ids", "value": "456456"}]})),
         "request": {"method": "PUT", "url": "Patient?identifier=http:/example.org/fhir/ids|456456"}},
        {"fullUrl": "http://example.org/fhir/Patient/123a", "resource": patient(json!({"id": "123a"})),
         "request": {"method": "PUT", "url": "Patient/123a", "ifMatch": "W/\"2\""}},
        {"request": {"method": "DELETE", "url": "Patient/234"}},
        {"request": {"method": "DELETE", "url": "Patient?identifier=123456"}},
        {"fullUrl": "urn:uuid:79378cb8-8f58-48e8-a5e8-60ac2755b674",
         "resource": {"resourceType": "Parameters", "parameter": [{"name": "coding", "valueCoding": {"system": "http://loinc.org", "code": "1963-8"}}]},
         "request": {"method": "POST", "url": "http://hl7.org/fhir/ValueSet/$lookup"}},
        {"request": {"method": "GET", "url": "Patient?name=peter"}},
        {"request": {"method": "GET", "url": "Patient/12334", "ifNoneMatch": "W/\"4\"", "ifModifiedSince": "2015-08-31T08:14:33+10:00"}}
      ]
    })
}

fn without_entry(mut bundle: Value, index: usize) -> Value {
    bundle["entry"].as_array_mut().unwrap().remove(index);
    bundle
}

// ---------------------------------------------------------------------------------------------------------------
// The R4 example transaction

#[test]
fn r4_example_transaction_fails_only_on_the_operation_at_another_server() {
    // Entry 7 POSTs to `http://hl7.org/fhir/ValueSet/$lookup`: an absolute url that is not this server's.
    let issues = parse(&r4_example(), BASE).unwrap_err();
    assert_eq!(locations(&issues), ["Bundle.entry[7].request.url"]);
    assert_eq!(issues[0].code, "invalid");
}

#[test]
fn r4_example_as_a_batch_answers_the_operation_alone() {
    let mut example = r4_example();
    example["type"] = json!("batch");
    let parsed = parse(&example, BASE).unwrap();
    assert_eq!(parsed.kind, BundleKind::Batch);
    assert_eq!(parsed.entries.len(), 10);
    for entry in &parsed.entries {
        assert_eq!(matches!(entry.plan, Plan::Invalid(_)), entry.index == 7, "entry {}", entry.index);
    }
}

#[test]
fn r4_example_transaction_entries() {
    let parsed = parse(&without_entry(r4_example(), 7), BASE).unwrap();
    assert_eq!(parsed.kind, BundleKind::Transaction);
    assert_eq!(parsed.base_url, BASE);
    let r: Vec<&EntryRequest> = parsed.entries.iter().map(|e| e.request().unwrap()).collect();

    assert_eq!(r[0].method, Method::Post);
    assert_eq!(r[0].target, Target::Type { resource_type: "Patient".into() });
    assert_eq!(r[0].full_url.as_deref(), Some("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"));
    assert!(matches!(&r[0].body, Body::Resource(p) if p["name"][0]["family"] == "Chalmers"));
    assert_eq!(r[0].if_none_exist, None);

    assert_eq!(r[1].if_none_exist, Some(q(&[("identifier", "http:/example.org/fhir/ids|234234")])));

    assert_eq!(r[2].method, Method::Put);
    assert_eq!(r[2].target, Target::Instance { resource_type: "Patient".into(), id: "123".into() });

    assert_eq!(
        r[3].target,
        Target::Conditional { resource_type: "Patient".into(), query: q(&[("identifier", "http:/example.org/fhir/ids|456456")]) }
    );

    assert_eq!(r[4].if_match.as_deref(), Some("W/\"2\""));
    assert_eq!(r[4].if_match_version(), Some("2"));

    assert_eq!(r[5].method, Method::Delete);
    assert_eq!(r[5].target, Target::Instance { resource_type: "Patient".into(), id: "234".into() });
    assert_eq!(r[5].body, Body::None);
    assert_eq!(r[6].target, Target::Conditional { resource_type: "Patient".into(), query: q(&[("identifier", "123456")]) });

    assert_eq!(r[7].target, Target::Search { resource_type: "Patient".into(), query: q(&[("name", "peter")]) });

    assert_eq!(r[8].target, Target::Instance { resource_type: "Patient".into(), id: "12334".into() });
    assert_eq!(r[8].if_none_match.as_deref(), Some("W/\"4\""));
    assert_eq!(r[8].if_modified_since, Some(Utc.with_ymd_and_hms(2015, 8, 30, 22, 14, 33).unwrap()));
}

#[test]
fn r4_example_transaction_processing_order() {
    // http.html#trules: DELETE, then POST, then PUT/PATCH, then GET/HEAD; bundle order within each group.
    let parsed = parse(&without_entry(r4_example(), 7), BASE).unwrap();
    assert_eq!(parsed.processing_order(), [5, 6, 0, 1, 2, 3, 4, 7, 8]);
}

// ---------------------------------------------------------------------------------------------------------------
// The envelope

#[test]
fn bundle_level_errors_fail_the_whole_parse() {
    let cases = [
        (json!("Bundle"), "Bundle"),
        (json!([]), "Bundle"),
        (json!({"resourceType": "Patient", "type": "batch"}), "Bundle.resourceType"),
        (json!({"type": "batch"}), "Bundle.resourceType"),
        (json!({"resourceType": "Bundle"}), "Bundle.type"),
        (json!({"resourceType": "Bundle", "type": "searchset"}), "Bundle.type"),
        (json!({"resourceType": "Bundle", "type": "history"}), "Bundle.type"),
        (json!({"resourceType": "Bundle", "type": "batch-response"}), "Bundle.type"),
        (json!({"resourceType": "Bundle", "type": "Transaction"}), "Bundle.type"),
        (json!({"resourceType": "Bundle", "type": 1}), "Bundle.type"),
        (json!({"resourceType": "Bundle", "type": "batch", "entry": {}}), "Bundle.entry"),
        (json!({"resourceType": "Bundle", "type": "transaction", "entry": "x"}), "Bundle.entry"),
    ];
    for (input, location) in cases {
        let issues = parse(&input, BASE).unwrap_err();
        assert_eq!(locations(&issues), [location], "{input}");
    }
}

#[test]
fn an_empty_transaction_is_not_an_error() {
    // http.html#trules: "It is not an error if the submitted bundle has no resources in it."
    for kind in ["batch", "transaction"] {
        let parsed = parse(&json!({"resourceType": "Bundle", "type": kind}), BASE).unwrap();
        assert!(parsed.entries.is_empty());
        assert!(parsed.processing_order().is_empty());
        let parsed = parse(&bundle(kind, vec![]), BASE).unwrap();
        assert!(parsed.entries.is_empty());
    }
}

#[test]
fn too_many_entries_are_refused() {
    let entries = vec![req("GET", "metadata"); MAX_ENTRIES + 1];
    let issues = parse(&bundle("batch", entries), BASE).unwrap_err();
    assert_eq!(issues[0].code, "too-long");
    assert_eq!(locations(&issues), ["Bundle.entry"]);
}

#[test]
fn five_thousand_entries_parse() {
    let entries: Vec<Value> = (0..5000)
        .map(|i| {
            with_full_url(
                with_resource(req("POST", "Observation"), json!({"resourceType": "Observation", "status": "final", "subject": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"}})),
                &format!("urn:uuid:00000000-0000-0000-0000-{i:012}"),
            )
        })
        .collect();
    let parsed = parse(&bundle("transaction", entries), BASE).unwrap();
    assert_eq!(parsed.entries.len(), 5000);
    assert_eq!(parsed.processing_order().len(), 5000);
    assert!(parsed.entries.iter().all(|e| e.request().is_some()));
    assert_eq!(parsed.entries[4999].index, 4999);
}

#[test]
fn entries_carry_their_index() {
    let parsed = parse(&bundle("batch", vec![req("GET", "metadata"), json!(7), req("GET", "_history")]), BASE).unwrap();
    for (i, entry) in parsed.entries.iter().enumerate() {
        assert_eq!(entry.index, i);
    }
    assert_eq!(parsed.entries[2].request().unwrap().index, 2);
}

#[test]
fn an_entry_needs_a_request_with_method_and_url() {
    let cases = [
        (json!(1), vec!["Bundle.entry[0]"]),
        (json!(null), vec!["Bundle.entry[0]"]),
        (json!({}), vec!["Bundle.entry[0].request"]),
        (json!({"request": "GET"}), vec!["Bundle.entry[0].request"]),
        (json!({"request": {"url": "Patient"}}), vec!["Bundle.entry[0].request.method"]),
        (json!({"request": {"method": "GET"}}), vec!["Bundle.entry[0].request.url"]),
        (json!({"request": {}}), vec!["Bundle.entry[0].request.method", "Bundle.entry[0].request.url"]),
        (json!({"request": {"method": "get", "url": "Patient"}}), vec!["Bundle.entry[0].request.method"]),
        (json!({"request": {"method": "OPTIONS", "url": "Patient"}}), vec!["Bundle.entry[0].request.method"]),
        (json!({"request": {"method": 1, "url": "Patient"}}), vec!["Bundle.entry[0].request.method"]),
        (json!({"request": {"method": "GET", "url": ""}}), vec!["Bundle.entry[0].request.url"]),
        (json!({"request": {"method": "GET", "url": ["Patient"]}}), vec!["Bundle.entry[0].request.url"]),
    ];
    for (entry, expected) in cases {
        let issues = one_invalid(entry.clone());
        assert_eq!(locations(&issues), expected, "{entry}");
    }
}

#[test]
fn methods_round_trip() {
    for code in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] {
        assert_eq!(Method::parse(code).unwrap().as_str(), code);
    }
    assert!(Method::parse("Get").is_none());
    assert!(!Method::Get.is_write() && !Method::Head.is_write());
    assert!(Method::Post.is_write() && Method::Put.is_write() && Method::Patch.is_write() && Method::Delete.is_write());
}

// ---------------------------------------------------------------------------------------------------------------
// Urls and targets

#[test]
fn read_urls() {
    assert_eq!(target("GET", "Patient/123"), Target::Instance { resource_type: "Patient".into(), id: "123".into() });
    assert_eq!(target("HEAD", "Patient/123"), Target::Instance { resource_type: "Patient".into(), id: "123".into() });
    assert_eq!(
        target("GET", "Patient/123/_history/2"),
        Target::Version { resource_type: "Patient".into(), id: "123".into(), version: "2".into() }
    );
    assert_eq!(
        target("GET", "Patient/123/_history"),
        Target::InstanceHistory { resource_type: "Patient".into(), id: "123".into(), query: vec![] }
    );
    assert_eq!(
        target("GET", "Patient/_history?_count=5"),
        Target::TypeHistory { resource_type: "Patient".into(), query: q(&[("_count", "5")]) }
    );
    assert_eq!(target("GET", "Patient"), Target::Search { resource_type: "Patient".into(), query: vec![] });
    assert_eq!(target("GET", "Patient?"), Target::Search { resource_type: "Patient".into(), query: vec![] });
    assert_eq!(
        target("GET", "Observation?subject=Patient/1&code=http://loinc.org|1234-5&code=x"),
        Target::Search {
            resource_type: "Observation".into(),
            query: q(&[("subject", "Patient/1"), ("code", "http://loinc.org|1234-5"), ("code", "x")])
        }
    );
}

#[test]
fn system_urls() {
    assert_eq!(target("GET", "metadata"), Target::System(SystemTarget::Capabilities));
    assert_eq!(target("GET", "_history"), Target::System(SystemTarget::History { query: vec![] }));
    assert_eq!(
        target("GET", "_history?_since=2024-01-01"),
        Target::System(SystemTarget::History { query: q(&[("_since", "2024-01-01")]) })
    );
    assert_eq!(
        target("GET", "?_type=Patient,Observation"),
        Target::System(SystemTarget::Search { query: q(&[("_type", "Patient,Observation")]) })
    );
    assert_eq!(target("GET", "Patient").resource_type(), Some("Patient"));
    assert_eq!(target("GET", "metadata").resource_type(), None);
}

#[test]
fn compartment_search_urls() {
    assert_eq!(
        target("GET", "Patient/123/Observation?code=x"),
        Target::CompartmentSearch {
            compartment: "Patient".into(),
            id: "123".into(),
            resource_type: "Observation".into(),
            query: q(&[("code", "x")])
        }
    );
    assert_eq!(target("GET", "Patient/123/Observation").resource_type(), Some("Observation"));
    // Observation is not a compartment; Patient/1/Foo names no type.
    assert_eq!(target_error("GET", "Observation/1/Patient").code, "not-supported");
    assert_eq!(target_error("GET", "Patient/1/Foo").code, "invalid");
    assert_eq!(one_invalid(req("DELETE", "Patient/1/Observation"))[0].code, "invalid");
}

#[test]
fn write_urls() {
    assert_eq!(target("POST", "Patient"), Target::Type { resource_type: "Patient".into() });
    assert_eq!(target("PUT", "Patient/123"), Target::Instance { resource_type: "Patient".into(), id: "123".into() });
    assert_eq!(
        target("PUT", "Patient?identifier=a|b"),
        Target::Conditional { resource_type: "Patient".into(), query: q(&[("identifier", "a|b")]) }
    );
    assert_eq!(target("PATCH", "Patient/123"), Target::Instance { resource_type: "Patient".into(), id: "123".into() });
    assert_eq!(
        target("PATCH", "Patient?identifier=a|b"),
        Target::Conditional { resource_type: "Patient".into(), query: q(&[("identifier", "a|b")]) }
    );
    assert_eq!(target("DELETE", "Patient/123"), Target::Instance { resource_type: "Patient".into(), id: "123".into() });
    assert_eq!(
        target("DELETE", "Patient?identifier=a|b"),
        Target::Conditional { resource_type: "Patient".into(), query: q(&[("identifier", "a|b")]) }
    );
}

#[test]
fn verbs_must_fit_the_url() {
    for (method, url) in [
        ("POST", "Patient/123"),
        ("POST", "Patient?identifier=a"),
        ("PUT", "Patient"),
        ("PUT", "Patient?"),
        ("PATCH", "Patient"),
        ("DELETE", "Patient"),
        ("DELETE", "Patient?"),
        ("DELETE", "Patient/123/_history/1"),
        ("PUT", "Patient/123/_history"),
        ("POST", "Patient/_history"),
        ("DELETE", "_history"),
        ("POST", "metadata"),
        ("DELETE", "?_type=Patient"),
    ] {
        let issue = target_error(method, url);
        assert_eq!(issue.code, "invalid", "{method} {url}");
    }
}

#[test]
fn bad_urls() {
    for url in ["Foo", "Foo/1", "patient/1", "Patient/a_b", "Patient/123/_history/x_y", "Patient//1", "Patient/", "/", "Patient/1#x"] {
        assert_eq!(target_error("GET", url).code, "invalid", "{url}");
    }
    assert_eq!(target_error("GET", &format!("Patient/{}", "a".repeat(65))).code, "invalid");
    for url in
        ["Patient/1/$everything", "$export", "Patient/$validate", "Patient/_search?name=x", "Patient/1/_history/2/x", "Patient/1/a/b/c"]
    {
        assert_eq!(target_error("GET", url).code, "not-supported", "{url}");
    }
    assert_eq!(target_error("POST", "Patient/$validate").code, "not-supported");
    // Query parameters where the interaction has none.
    for url in ["Patient/1?_summary=true", "Patient/1/_history/2?x=1", "metadata?mode=full"] {
        assert_eq!(target_error("GET", url).code, "invalid", "{url}");
    }
}

#[test]
fn absolute_urls_of_this_server_become_relative() {
    assert_eq!(target("GET", "http://example.org/fhir/Patient/1"), Target::Instance { resource_type: "Patient".into(), id: "1".into() });
    assert_eq!(target("GET", "http://example.org/fhir/metadata"), Target::System(SystemTarget::Capabilities));
    assert_eq!(
        target("GET", "http://example.org/fhir?_type=Patient"),
        Target::System(SystemTarget::Search { query: q(&[("_type", "Patient")]) })
    );
    assert_eq!(one(req("GET", "http://example.org/fhir/Patient/1")).url, "Patient/1");
    // A leading `/` is the base too.
    assert_eq!(target("GET", "/Patient/1"), Target::Instance { resource_type: "Patient".into(), id: "1".into() });
    // The base given with a trailing slash is the same base.
    let parsed = parse(&bundle("batch", vec![req("GET", "http://example.org/fhir/Patient/1")]), "http://example.org/fhir/").unwrap();
    assert!(parsed.entries[0].request().is_some());
    assert_eq!(parsed.base_url, BASE);
}

#[test]
fn absolute_urls_of_other_servers_are_refused() {
    for url in [
        "http://other.org/fhir/Patient/1",
        "https://example.org/fhir/Patient/1",
        "http://example.org/fhirx/Patient/1",
        "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
    ] {
        let issue = target_error("GET", url);
        assert_eq!(issue.code, "invalid", "{url}");
        assert!(issue.diagnostics.contains("another server"), "{url}");
    }
    // Nothing is absolute to a server without a base; an absolute url is then always another server's.
    let parsed = parse(&bundle("batch", vec![req("GET", "http://example.org/fhir/Patient/1")]), "").unwrap();
    assert!(matches!(parsed.entries[0].plan, Plan::Invalid(_)));
}

#[test]
fn queries_are_percent_decoded_in_order() {
    let t = target("GET", "Patient?identifier=http%3A%2F%2Fx.org%7C12&name=J%C3%BCrgen&given=a+b&family=a%2Bb&&_count=2&flag");
    assert_eq!(
        t,
        Target::Search {
            resource_type: "Patient".into(),
            query: q(&[
                ("identifier", "http://x.org|12"),
                ("name", "Jürgen"),
                ("given", "a b"),
                ("family", "a+b"),
                ("_count", "2"),
                ("flag", "")
            ])
        }
    );
    // A value may contain `=` and `?`.
    assert_eq!(target("GET", "Patient?a=b=c?d"), Target::Search { resource_type: "Patient".into(), query: q(&[("a", "b=c?d")]) });
    // Path segments are decoded too; an encoded `/` does not make a valid id.
    assert_eq!(target("GET", "Patient/%31%32"), Target::Instance { resource_type: "Patient".into(), id: "12".into() });
    assert_eq!(target_error("GET", "Patient/a%2Fb").code, "invalid");
    assert_eq!(target_error("GET", "Patient?name=%FF").code, "invalid");
    assert_eq!(target_error("GET", "Patient?=x").code, "invalid");
}

// ---------------------------------------------------------------------------------------------------------------
// Bodies

#[test]
fn post_and_put_need_a_resource_of_the_url_type() {
    let issues = one_invalid(req("POST", "Patient"));
    assert_eq!(locations(&issues), ["Bundle.entry[0].resource"]);
    assert_eq!(issues[0].code, "required");

    let issues = one_invalid(with_resource(req("POST", "Patient"), json!({"resourceType": "Observation"})));
    assert_eq!(locations(&issues), ["Bundle.entry[0].resource.resourceType"]);

    let issues = one_invalid(with_resource(req("POST", "Patient"), json!({"active": true})));
    assert_eq!(locations(&issues), ["Bundle.entry[0].resource.resourceType"]);

    let issues = one_invalid(with_resource(req("PUT", "Patient/1"), json!("Patient")));
    assert_eq!(locations(&issues), ["Bundle.entry[0].resource"]);

    let issues = one_invalid(with_resource(req("PUT", "Patient?identifier=x"), json!({"resourceType": "Person"})));
    assert_eq!(locations(&issues), ["Bundle.entry[0].resource.resourceType"]);

    let r = one(with_resource(req("POST", "Patient"), json!({"resourceType": "Patient", "active": true})));
    assert_eq!(r.body, Body::Resource(json!({"resourceType": "Patient", "active": true})));
}

#[test]
fn put_needs_the_url_id_in_the_resource() {
    // http.html#update: no id, or an id that disagrees with the url, is a 400.
    let issues = one_invalid(with_resource(req("PUT", "Patient/1"), json!({"resourceType": "Patient"})));
    assert_eq!(locations(&issues), ["Bundle.entry[0].resource.id"]);
    let issues = one_invalid(with_resource(req("PUT", "Patient/1"), json!({"resourceType": "Patient", "id": "2"})));
    assert_eq!(locations(&issues), ["Bundle.entry[0].resource.id"]);
    assert!(!issues[0].diagnostics.contains('2'), "the diagnostics do not echo the id");
    one(with_resource(req("PUT", "Patient/1"), json!({"resourceType": "Patient", "id": "1"})));
    // A conditional update may omit the id: the server finds it.
    one(with_resource(req("PUT", "Patient?identifier=x"), json!({"resourceType": "Patient"})));
}

#[test]
fn get_head_and_delete_carry_no_resource() {
    for (method, url) in [("GET", "Patient/1"), ("HEAD", "Patient/1"), ("DELETE", "Patient/1"), ("DELETE", "Patient?identifier=x")] {
        let issues = one_invalid(with_resource(req(method, url), json!({"resourceType": "Patient", "id": "1"})));
        assert_eq!(locations(&issues), ["Bundle.entry[0].resource"], "{method} {url}");
    }
}

#[test]
fn patch_with_a_json_patch_binary() {
    let patch = r#"[{"op": "replace", "path": "/active", "value": false}]"#;
    let binary = json!({"resourceType": "Binary", "contentType": "application/json-patch+json", "data": b64(patch)});
    let r = one(with_resource(req("PATCH", "Patient/1"), binary));
    assert_eq!(r.body, Body::JsonPatch(json!([{"op": "replace", "path": "/active", "value": false}])));
    // The decoded patch applies with the crate's JSON Patch.
    let Body::JsonPatch(doc) = r.body else { unreachable!() };
    let patched = crate::patch::apply_json_patch(&json!({"resourceType": "Patient", "id": "1", "active": true}), &doc).unwrap();
    assert_eq!(patched["active"], false);

    // A charset parameter and wrapped base64 are accepted.
    let wrapped = b64(patch).chars().collect::<Vec<_>>().chunks(10).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join("\n");
    let binary = json!({"resourceType": "Binary", "contentType": "application/json-patch+json; charset=utf-8", "data": wrapped});
    assert!(matches!(one(with_resource(req("PATCH", "Patient?identifier=x"), binary)).body, Body::JsonPatch(_)));
}

#[test]
fn patch_with_a_fhirpath_parameters() {
    let params = json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Patient.active"}, {"name": "value", "valueBoolean": false}]}]});
    let r = one(with_resource(req("PATCH", "Patient/1"), params.clone()));
    assert_eq!(r.body, Body::FhirPathPatch(params.clone()));
    let patched = crate::patch::apply_fhirpath_patch(&json!({"resourceType": "Patient", "id": "1", "active": true}), &params).unwrap();
    assert_eq!(patched["active"], false);
}

#[test]
fn bad_patch_bodies() {
    let cases = [
        (None, "Bundle.entry[0].resource"),
        (Some(json!({"resourceType": "Patient", "id": "1"})), "Bundle.entry[0].resource"),
        (
            Some(json!({"resourceType": "Binary", "contentType": "application/json", "data": b64("[]")})),
            "Bundle.entry[0].resource.contentType",
        ),
        (Some(json!({"resourceType": "Binary", "data": b64("[]")})), "Bundle.entry[0].resource.contentType"),
        (Some(json!({"resourceType": "Binary", "contentType": "application/json-patch+json"})), "Bundle.entry[0].resource.data"),
        (
            Some(json!({"resourceType": "Binary", "contentType": "application/json-patch+json", "data": "!!!"})),
            "Bundle.entry[0].resource.data",
        ),
        (
            Some(json!({"resourceType": "Binary", "contentType": "application/json-patch+json", "data": b64("not json")})),
            "Bundle.entry[0].resource.data",
        ),
    ];
    for (resource, location) in cases {
        let entry = match &resource {
            Some(r) => with_resource(req("PATCH", "Patient/1"), r.clone()),
            None => req("PATCH", "Patient/1"),
        };
        assert_eq!(locations(&one_invalid(entry)), [location], "{resource:?}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// fullUrl

#[test]
fn full_urls_are_absolute_identities() {
    let get = || req("GET", "Patient/1");
    for ok in [
        "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
        "urn:uuid:61EBE359-BFDC-4613-8BF2-C5E300945F0A",
        "urn:oid:1.2.3.4",
        "urn:oid:2.16.840.1.113883",
        "http://example.org/fhir/Patient/1",
        "https://other.org/Patient/1",
    ] {
        assert_eq!(one(with_full_url(get(), ok)).full_url.as_deref(), Some(ok));
    }
    for bad in [
        "urn:uuid:61ebe359",
        "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0g",
        "urn:oid:3.1",
        "urn:oid:1",
        "urn:oid:1.02",
        "urn:oid:1..2",
        "Patient/1",
        "urn:isbn:123",
        "http://example.org/fhir/Patient/1/_history/2",
        "http://example.org/a b",
        "",
    ] {
        assert_eq!(locations(&one_invalid(with_full_url(get(), bad))), ["Bundle.entry[0].fullUrl"], "{bad}");
    }
    let mut entry = get();
    entry["fullUrl"] = json!(1);
    assert_eq!(locations(&one_invalid(entry)), ["Bundle.entry[0].fullUrl"]);
}

#[test]
fn a_restful_full_url_agrees_with_the_resource() {
    // Bundle.entry.fullUrl: "fullUrl SHALL NOT disagree with the id in the resource".
    let put = |id: &str| with_resource(req("PUT", &format!("Patient/{id}")), json!({"resourceType": "Patient", "id": id}));
    one(with_full_url(put("1"), "http://example.org/fhir/Patient/1"));
    assert_eq!(locations(&one_invalid(with_full_url(put("1"), "http://example.org/fhir/Patient/2"))), ["Bundle.entry[0].fullUrl"]);
    assert_eq!(locations(&one_invalid(with_full_url(put("1"), "http://example.org/fhir/Person/1"))), ["Bundle.entry[0].fullUrl"]);
    // A POST's resource has no id yet: any RESTful fullUrl of its type is fine.
    one(with_full_url(with_resource(req("POST", "Patient"), json!({"resourceType": "Patient"})), "http://other.org/Patient/77"));
}

// ---------------------------------------------------------------------------------------------------------------
// Conditional fields

#[test]
fn conditional_fields_apply_to_their_verbs() {
    let post = || with_resource(req("POST", "Patient"), json!({"resourceType": "Patient"}));
    let mut e = post();
    e["request"]["ifNoneExist"] = json!("identifier=http://x|1&active=true");
    assert_eq!(one(e).if_none_exist, Some(q(&[("identifier", "http://x|1"), ("active", "true")])));
    // Tolerated spellings: a leading `?`, or the entry's own `Type?`.
    for text in ["?identifier=1", "Patient?identifier=1"] {
        let mut e = post();
        e["request"]["ifNoneExist"] = json!(text);
        assert_eq!(one(e).if_none_exist, Some(q(&[("identifier", "1")])), "{text}");
    }
    for text in ["Observation?code=1", "?", "&&"] {
        let mut e = post();
        e["request"]["ifNoneExist"] = json!(text);
        assert_eq!(locations(&one_invalid(e)), ["Bundle.entry[0].request.ifNoneExist"], "{text}");
    }

    let mut e = req("DELETE", "Patient/1");
    e["request"]["ifMatch"] = json!("\"3\"");
    assert_eq!(one(e).if_match_version(), Some("3"));

    let wrong_verb = [
        ("GET", "Patient/1", "ifMatch", "W/\"1\""),
        ("POST", "Patient", "ifMatch", "W/\"1\""),
        ("DELETE", "Patient/1", "ifNoneExist", "identifier=1"),
        ("PUT", "Patient/1", "ifNoneMatch", "W/\"1\""),
        ("DELETE", "Patient/1", "ifModifiedSince", "2015-08-31T08:14:33Z"),
    ];
    for (method, url, field, value) in wrong_verb {
        let mut e = req(method, url);
        if matches!(method, "POST" | "PUT") {
            e["resource"] = json!({"resourceType": "Patient", "id": "1"});
        }
        e["request"][field] = json!(value);
        assert_eq!(locations(&one_invalid(e)), [format!("Bundle.entry[0].request.{field}")], "{method} {field}");
    }

    for (field, value) in [("ifMatch", json!("3")), ("ifMatch", json!("W/3")), ("ifMatch", json!("")), ("ifMatch", json!(3))] {
        let mut e = req("DELETE", "Patient/1");
        e["request"][field] = value.clone();
        assert_eq!(locations(&one_invalid(e)), [format!("Bundle.entry[0].request.{field}")], "{value}");
    }
    let mut e = req("GET", "Patient/1");
    e["request"]["ifModifiedSince"] = json!("2015-08-31");
    assert_eq!(locations(&one_invalid(e)), ["Bundle.entry[0].request.ifModifiedSince"]);
}

#[test]
fn etag_versions() {
    assert_eq!(etag_version("W/\"12\""), Some("12"));
    assert_eq!(etag_version("\"12\""), Some("12"));
    for bad in ["12", "W/12", "W/\"\"", "\"a b\"", "W/\"1", ""] {
        assert_eq!(etag_version(bad), None, "{bad}");
    }
    assert_eq!(etag(7), "W/\"7\"");
    assert_eq!(etag_version(&etag(7)), Some("7"));
}

// ---------------------------------------------------------------------------------------------------------------
// Batch and transaction behaviour

#[test]
fn a_malformed_batch_entry_does_not_stop_the_others() {
    let b = bundle(
        "batch",
        vec![
            req("GET", "Patient/1"),
            req("GET", "Foo/1"),
            with_resource(req("POST", "Patient"), json!({"resourceType": "Patient"})),
            json!({"request": {"method": "PUT", "url": "Patient/2"}}),
            req("DELETE", "Patient/3"),
        ],
    );
    let parsed = parse(&b, BASE).unwrap();
    let invalid: Vec<usize> = parsed.entries.iter().filter(|e| matches!(e.plan, Plan::Invalid(_))).map(|e| e.index).collect();
    assert_eq!(invalid, [1, 3]);
    let Plan::Invalid(issues) = &parsed.entries[3].plan else { unreachable!() };
    assert_eq!(locations(issues), ["Bundle.entry[3].resource"]);
    // A batch runs in bundle order.
    assert_eq!(parsed.processing_order(), [0, 1, 2, 3, 4]);
}

#[test]
fn a_malformed_transaction_entry_fails_the_transaction_with_every_issue() {
    let b = bundle(
        "transaction",
        vec![
            req("GET", "Patient/1"),
            req("GET", "Foo/1"),
            with_resource(req("POST", "Patient"), json!({"resourceType": "Patient"})),
            json!({"request": {"method": "PUT", "url": "Patient/2"}}),
        ],
    );
    let issues = parse(&b, BASE).unwrap_err();
    assert_eq!(locations(&issues), ["Bundle.entry[1].request.url", "Bundle.entry[3].resource"]);
    assert!(issues.iter().all(|i| i.severity == crate::outcome::Severity::Error));
}

#[test]
fn transaction_issues_are_capped() {
    let issues = parse(&bundle("transaction", vec![req("GET", "Foo"); 500]), BASE).unwrap_err();
    assert_eq!(issues.len(), MAX_ISSUES);
}

#[test]
fn a_transaction_must_not_repeat_a_full_url() {
    let post = |uuid: &str| with_full_url(with_resource(req("POST", "Patient"), json!({"resourceType": "Patient"})), uuid);
    let uuid = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a";
    let issues = parse(&bundle("transaction", vec![post(uuid), req("GET", "metadata"), post(uuid)]), BASE).unwrap_err();
    assert_eq!(locations(&issues), ["Bundle.entry[2].fullUrl"]);
    assert_eq!(issues[0].code, "duplicate");
    assert_eq!(issues[0].diagnostics, "entries 0 and 2 have the same fullUrl (bdl-7)");
}

#[test]
fn a_batch_repeating_a_full_url_answers_the_repeat_with_an_error() {
    // bdl-7: "FullUrl must be unique in a bundle, or else entries with the same fullUrl must have different
    // meta.versionId (except in history bundles)".
    let uuid = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a";
    let post = |version: Option<&str>| {
        let mut resource = json!({"resourceType": "Patient"});
        if let Some(v) = version {
            resource["meta"] = json!({"versionId": v});
        }
        with_full_url(with_resource(req("POST", "Patient"), resource), uuid)
    };
    let parsed = parse(&bundle("batch", vec![post(None), post(None), post(Some("1")), post(Some("2")), post(Some("1"))]), BASE).unwrap();
    let invalid: Vec<usize> = parsed.entries.iter().filter(|e| matches!(e.plan, Plan::Invalid(_))).map(|e| e.index).collect();
    assert_eq!(invalid, [1, 4]);
}

#[test]
fn a_transaction_must_not_write_one_resource_twice() {
    // http.html#trules: "If any resource identities ... overlap in steps 1-3, then the transaction SHALL fail."
    let put = |id: &str| with_resource(req("PUT", &format!("Patient/{id}")), json!({"resourceType": "Patient", "id": id}));
    let params = json!({"resourceType": "Parameters", "parameter": []});
    for second in [put("1"), req("DELETE", "Patient/1"), with_resource(req("PATCH", "Patient/1"), params)] {
        let issues = parse(&bundle("transaction", vec![put("1"), put("2"), second.clone()]), BASE).unwrap_err();
        assert_eq!(locations(&issues), ["Bundle.entry[2].request.url"], "{second}");
        assert_eq!(issues[0].code, "duplicate");
    }
    // Reads of a written resource, and writes of other types with the same id, are fine.
    parse(&bundle("transaction", vec![put("1"), req("GET", "Patient/1"), req("DELETE", "Observation/1")]), BASE).unwrap();
    // A batch's entries are independent: the executor answers each.
    parse(&bundle("batch", vec![put("1"), put("1")]), BASE).unwrap();
}

#[test]
fn identity_overlaps_after_conditional_resolution() {
    // The executor resolves `PUT Patient?identifier=x` to Patient/7 and checks again.
    assert!(identity_overlaps([(0, "Patient/1"), (1, "Patient/7"), (2, "Observation/1")]).is_empty());
    let issues = identity_overlaps([(0, "Patient/1"), (3, "Patient/7"), (5, "Patient/7"), (6, "Patient/1")]);
    assert_eq!(locations(&issues), ["Bundle.entry[5].request.url", "Bundle.entry[6].request.url"]);
    assert_eq!(issues[0].diagnostics, "entries 3 and 5 change the same resource");
    assert_eq!(issues[1].diagnostics, "entries 0 and 6 change the same resource");
}

#[test]
fn processing_order_groups_by_verb_and_keeps_bundle_order() {
    let post = || with_resource(req("POST", "Patient"), json!({"resourceType": "Patient"}));
    let put = |id: &str| with_resource(req("PUT", &format!("Patient/{id}")), json!({"resourceType": "Patient", "id": id}));
    let patch = |id: &str| with_resource(req("PATCH", &format!("Observation/{id}")), json!({"resourceType": "Parameters"}));
    let entries = vec![
        req("GET", "Patient/9"),      // 0
        put("1"),                     // 1
        post(),                       // 2
        req("DELETE", "Patient/5"),   // 3
        req("HEAD", "Patient/9"),     // 4
        patch("2"),                   // 5
        post(),                       // 6
        req("DELETE", "Encounter/5"), // 7
        put("3"),                     // 8
        req("GET", "Patient?name=x"), // 9
    ];
    let transaction = parse(&bundle("transaction", entries.clone()), BASE).unwrap();
    assert_eq!(transaction.processing_order(), [3, 7, 2, 6, 1, 5, 8, 0, 4, 9]);
    let batch = parse(&bundle("batch", entries), BASE).unwrap();
    assert_eq!(batch.processing_order(), (0..10).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------------------------------------------
// Identity map and reference rewriting

const PATIENT_UUID: &str = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a";
const OBS1_UUID: &str = "urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059";
const BINARY_UUID: &str = "urn:uuid:74891afc-ed52-42a2-bcd7-f13d9b60f096";

/// A transaction creating a Patient and two Observations that reference it through its urn:uuid.
fn patient_and_observations() -> Value {
    let obs = |code: &str| {
        json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": PATIENT_UUID, "display": "Peter"},
            "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">For <a href=\"{PATIENT_UUID}\">the patient</a></div>")}})
    };
    bundle(
        "transaction",
        vec![
            with_full_url(
                with_resource(req("POST", "Patient"), json!({"resourceType": "Patient", "name": [{"family": "Chalmers"}]})),
                PATIENT_UUID,
            ),
            with_full_url(with_resource(req("POST", "Observation"), obs("1234-5")), OBS1_UUID),
            with_resource(req("POST", "Observation"), obs("2345-6")),
        ],
    )
}

#[test]
fn urn_uuid_references_are_rewritten_to_the_new_ids() {
    let parsed = parse(&patient_and_observations(), BASE).unwrap();
    let assigned = HashMap::from([(0, "Patient/p1".to_string()), (1, "Observation/o1".to_string()), (2, "Observation/o2".to_string())]);
    let map = parsed.identity_map(&assigned);
    assert_eq!(
        map,
        HashMap::from([(PATIENT_UUID.to_string(), "Patient/p1".to_string()), (OBS1_UUID.to_string(), "Observation/o1".to_string())])
    );

    for entry in &parsed.entries[1..] {
        let Body::Resource(mut obs) = entry.request().unwrap().body.clone() else { panic!() };
        assert_eq!(rewrite_references(&mut obs, &map), 2);
        assert_eq!(obs["subject"], json!({"reference": "Patient/p1", "display": "Peter"}));
        assert_eq!(obs["text"]["div"], "<div xmlns=\"http://www.w3.org/1999/xhtml\">For <a href=\"Patient/p1\">the patient</a></div>");
        assert!(placeholder_references(&obs).is_empty());
    }
}

#[test]
fn identity_map_covers_puts_and_restful_full_urls() {
    let b = bundle(
        "transaction",
        vec![
            // PUT with a placeholder fullUrl: its identity is the url's.
            with_full_url(with_resource(req("PUT", "Patient/123"), json!({"resourceType": "Patient", "id": "123"})), PATIENT_UUID),
            // POST with a fullUrl of this server: the old id is an alias too.
            with_full_url(
                with_resource(req("POST", "Observation"), json!({"resourceType": "Observation"})),
                "http://example.org/fhir/Observation/old",
            ),
            // POST with a fullUrl of another server: only the exact url maps.
            with_full_url(
                with_resource(req("POST", "Encounter"), json!({"resourceType": "Encounter"})),
                "http://other.org/fhir/Encounter/e",
            ),
            // Conditional update: the executor resolved it.
            with_full_url(with_resource(req("PUT", "Practitioner?identifier=x"), json!({"resourceType": "Practitioner"})), OBS1_UUID),
            // POST whose id the executor has not given: nothing maps.
            with_full_url(with_resource(req("POST", "Patient"), json!({"resourceType": "Patient"})), BINARY_UUID),
            // No fullUrl: nothing to map.
            with_resource(req("POST", "Patient"), json!({"resourceType": "Patient"})),
        ],
    );
    let parsed = parse(&b, BASE).unwrap();
    let assigned = HashMap::from([
        (1, "Observation/new/_history/1".to_string()),
        (2, "Encounter/e2".to_string()),
        (3, "Practitioner/pr".to_string()),
        (5, "Patient/x".to_string()),
    ]);
    let map = parsed.identity_map(&assigned);
    let expected: HashMap<String, String> = [
        (PATIENT_UUID, "Patient/123"),
        ("http://example.org/fhir/Observation/old", "Observation/new/_history/1"),
        ("Observation/old", "Observation/new/_history/1"),
        ("http://other.org/fhir/Encounter/e", "Encounter/e2"),
        (OBS1_UUID, "Practitioner/pr"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(map, expected);

    let mut r = json!({"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "x"},
        "subject": {"reference": PATIENT_UUID},
        "result": [{"reference": "Observation/old"}, {"reference": "http://example.org/fhir/Observation/old"},
                   {"reference": "http://example.org/fhir/Observation/old/_history/7"}, {"reference": "Observation/other"}],
        "encounter": {"reference": "http://other.org/fhir/Encounter/e"},
        "performer": [{"reference": OBS1_UUID}]});
    assert_eq!(rewrite_references(&mut r, &map), 6);
    assert_eq!(r["subject"]["reference"], "Patient/123");
    assert_eq!(r["result"][0]["reference"], "Observation/new");
    assert_eq!(r["result"][1]["reference"], "Observation/new");
    // Version-specific references stay version specific, with the new version.
    assert_eq!(r["result"][2]["reference"], "Observation/new/_history/1");
    assert_eq!(r["result"][3]["reference"], "Observation/other");
    assert_eq!(r["encounter"]["reference"], "Encounter/e2");
    assert_eq!(r["performer"][0]["reference"], "Practitioner/pr");
}

#[test]
fn only_base_type_id_full_urls_get_a_relative_alias() {
    let post = |full_url: &str| with_full_url(with_resource(req("POST", "Patient"), json!({"resourceType": "Patient"})), full_url);
    let parsed =
        parse(&bundle("transaction", vec![post("http://example.org/fhir/x/Patient/1"), post("http://example.org/fhirx/Patient/2")]), BASE)
            .unwrap();
    let map = parsed.identity_map(&HashMap::from([(0, "Patient/a".to_string()), (1, "Patient/b".to_string())]));
    let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["http://example.org/fhir/x/Patient/1", "http://example.org/fhirx/Patient/2"]);
}

#[test]
fn rewrite_reaches_every_depth() {
    let map = HashMap::from([(PATIENT_UUID.to_string(), "Patient/p1".to_string())]);
    let mut r = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "contained": [{"resourceType": "Provenance", "id": "prov", "target": [{"reference": PATIENT_UUID}],
                       "agent": [{"who": {"reference": PATIENT_UUID}}],
                       "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\"><img src='{PATIENT_UUID}'/></div>")}}],
        "extension": [{"url": "http://example.org/ext", "valueReference": {"reference": PATIENT_UUID}},
                      {"url": "http://example.org/nested", "extension": [{"url": "a", "valueReference": {"reference": PATIENT_UUID}}]}],
        "component": [{"code": {"text": "c"}, "extension": [{"url": "u", "valueReference": {"reference": PATIENT_UUID}}]}],
        "hasMember": [{"reference": "Observation/keep"}, {"identifier": {"value": PATIENT_UUID}}, {"reference": "#prov"}]});
    assert_eq!(rewrite_references(&mut r, &map), 6);
    assert_eq!(r["contained"][0]["target"][0]["reference"], "Patient/p1");
    assert_eq!(r["contained"][0]["agent"][0]["who"]["reference"], "Patient/p1");
    assert_eq!(r["contained"][0]["text"]["div"], "<div xmlns=\"http://www.w3.org/1999/xhtml\"><img src='Patient/p1'/></div>");
    assert_eq!(r["extension"][0]["valueReference"]["reference"], "Patient/p1");
    assert_eq!(r["extension"][1]["extension"][0]["valueReference"]["reference"], "Patient/p1");
    assert_eq!(r["component"][0]["extension"][0]["valueReference"]["reference"], "Patient/p1");
    assert_eq!(r["hasMember"][0]["reference"], "Observation/keep");
    // Identifier.value is a string, not a link; a local `#id` reference is not an entry.
    assert_eq!(r["hasMember"][1]["identifier"]["value"], PATIENT_UUID);
    assert_eq!(r["hasMember"][2]["reference"], "#prov");
}

#[test]
fn rewrite_matches_exact_values_only() {
    let map = HashMap::from([
        (PATIENT_UUID.to_string(), "Patient/p1".to_string()),
        ("http://example.org/fhir/Patient/1".to_string(), "Patient/9".to_string()),
    ]);
    let mut r = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": format!("{PATIENT_UUID}0")},
        "focus": [{"reference": "http://example.org/fhir/Patient/10"}, {"reference": "http://example.org/fhir/Patient/1#frag"},
                  {"reference": format!(" {PATIENT_UUID}")}, {"reference": "http://example.org/fhir/Patient/1/_history/3"}],
        "note": [{"text": format!("see {PATIENT_UUID}")}]});
    assert_eq!(rewrite_references(&mut r, &map), 2);
    assert_eq!(r["subject"]["reference"], format!("{PATIENT_UUID}0"));
    assert_eq!(r["focus"][0]["reference"], "http://example.org/fhir/Patient/10");
    assert_eq!(r["focus"][1]["reference"], "Patient/9#frag");
    assert_eq!(r["focus"][2]["reference"], format!(" {PATIENT_UUID}"));
    // The map gives no version: the reference keeps its own.
    assert_eq!(r["focus"][3]["reference"], "Patient/9/_history/3");
    assert_eq!(r["note"][0]["text"], format!("see {PATIENT_UUID}"));
}

#[test]
fn placeholder_uris_are_rewritten_but_not_canonicals_or_business_uris() {
    let map = HashMap::from([
        (BINARY_UUID.to_string(), "Binary/b1".to_string()),
        ("urn:oid:1.2.3.4".to_string(), "Binary/b2".to_string()),
        ("http://example.org/fhir/StructureDefinition/sd".to_string(), "StructureDefinition/sd2".to_string()),
    ]);
    // Attachment.url (url) and an extension's valueUri (uri) hold placeholders of Binaries created in the bundle.
    let mut doc = json!({"resourceType": "DocumentReference", "status": "current",
        "content": [{"attachment": {"contentType": "application/pdf", "url": BINARY_UUID}}, {"attachment": {"url": "urn:oid:1.2.3.4"}}],
        "extension": [{"url": "http://example.org/ext", "valueUri": BINARY_UUID}, {"url": "http://example.org/c", "valueCanonical": BINARY_UUID}],
        "_status": {"extension": [{"url": "http://example.org/s", "valueUrl": BINARY_UUID}]},
        "meta": {"profile": [BINARY_UUID]},
        "identifier": [{"system": BINARY_UUID, "value": "x"}]});
    assert_eq!(rewrite_references(&mut doc, &map), 5);
    assert_eq!(doc["content"][0]["attachment"]["url"], "Binary/b1");
    assert_eq!(doc["content"][1]["attachment"]["url"], "Binary/b2");
    assert_eq!(doc["extension"][0]["valueUri"], "Binary/b1");
    assert_eq!(doc["_status"]["extension"][0]["valueUrl"], "Binary/b1");
    assert_eq!(doc["identifier"][0]["system"], "Binary/b1");
    // "Elements of type canonical are not replaced" (meta.profile, valueCanonical).
    assert_eq!(doc["extension"][1]["valueCanonical"], BINARY_UUID);
    assert_eq!(doc["meta"]["profile"][0], BINARY_UUID);

    // An absolute url in a uri element is an identifier, not a link: it stays.
    let mut sd = json!({"resourceType": "StructureDefinition", "url": "http://example.org/fhir/StructureDefinition/sd", "name": "sd", "status": "draft",
        "kind": "resource", "abstract": false, "type": "Patient"});
    assert_eq!(rewrite_references(&mut sd, &map), 0);
    assert_eq!(sd["url"], "http://example.org/fhir/StructureDefinition/sd");
}

#[test]
fn narrative_links_are_rewritten_on_exact_attribute_values() {
    let map = HashMap::from([
        (PATIENT_UUID.to_string(), "Patient/p1".to_string()),
        ("http://example.org/fhir/Patient/1?a=1&b=2".to_string(), "Patient/9".to_string()),
        (BINARY_UUID.to_string(), "Binary/b&1".to_string()),
    ]);
    let div = format!(
        "<div xmlns=\"http://www.w3.org/1999/xhtml\">\
         <p title=\"{PATIENT_UUID}\">{PATIENT_UUID}</p>\
         <a class=\"x\" href = \"{PATIENT_UUID}\">one</a>\
         <a href='{PATIENT_UUID}#sec'>two</a>\
         <!-- <a href=\"{PATIENT_UUID}\">commented</a> -->\
         <a href=\"http://example.org/fhir/Patient/1?a=1&amp;b=2\">three</a>\
         <img alt=\"a > b\" src=\"{BINARY_UUID}\"/>\
         <span href=\"{PATIENT_UUID}\">not a link</span>\
         <a href=\"{PATIENT_UUID}x\">other</a>\
         </div>"
    );
    let mut r = json!({"resourceType": "Patient", "text": {"status": "generated", "div": div}});
    assert_eq!(rewrite_references(&mut r, &map), 4);
    let expected = format!(
        "<div xmlns=\"http://www.w3.org/1999/xhtml\">\
         <p title=\"{PATIENT_UUID}\">{PATIENT_UUID}</p>\
         <a class=\"x\" href = \"Patient/p1\">one</a>\
         <a href='Patient/p1#sec'>two</a>\
         <!-- <a href=\"{PATIENT_UUID}\">commented</a> -->\
         <a href=\"Patient/9\">three</a>\
         <img alt=\"a > b\" src=\"Binary/b&amp;1\"/>\
         <span href=\"{PATIENT_UUID}\">not a link</span>\
         <a href=\"{PATIENT_UUID}x\">other</a>\
         </div>"
    );
    assert_eq!(r["text"]["div"], expected);
}

#[test]
fn composition_section_narratives_are_rewritten() {
    let map = HashMap::from([(PATIENT_UUID.to_string(), "Patient/p1".to_string())]);
    let link = format!("<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"{PATIENT_UUID}\">p</a></div>");
    let mut c = json!({"resourceType": "Composition", "status": "final", "type": {"text": "t"}, "date": "2024-01-01", "title": "t",
        "author": [{"reference": PATIENT_UUID}],
        "section": [{"title": "s", "text": {"status": "generated", "div": link}, "section": [{"text": {"status": "generated", "div": link}}]}]});
    assert_eq!(rewrite_references(&mut c, &map), 3);
    let rewritten = "<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"Patient/p1\">p</a></div>";
    assert_eq!(c["section"][0]["text"]["div"], rewritten);
    assert_eq!(c["section"][0]["section"][0]["text"]["div"], rewritten);
}

#[test]
fn malformed_narratives_never_panic() {
    let map = HashMap::from([(PATIENT_UUID.to_string(), "Patient/p1".to_string())]);
    for div in [
        "<",
        "<a",
        "<a href",
        "<a href=",
        "<a href=\"",
        "<a href=\"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
        "<a href=urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a>",
        "<!-- never closed <a href=\"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a\">",
        "<a \"x\" href=\"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a\">",
        "<a href=\"&amp\">",
        "<a href=\"&#xZZ;\">",
        "<a href=\"&#1114112;\">",
        "<é href=\"ü\">ö</é>",
        "<<<>>>",
        "",
    ] {
        let mut r = json!({"resourceType": "Patient", "text": {"status": "generated", "div": div}});
        rewrite_references(&mut r, &map);
    }
    // Entities decode before the comparison: `&#117;rn:` is `urn:`.
    let mut r = json!({"resourceType": "Patient", "text": {"status": "generated",
        "div": "<div><a href=\"&#117;rn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a\">p</a></div>"}});
    assert_eq!(rewrite_references(&mut r, &map), 1);
    assert_eq!(r["text"]["div"], "<div><a href=\"Patient/p1\">p</a></div>");
}

#[test]
fn rewrite_tolerates_unknown_shapes() {
    let map = HashMap::from([(PATIENT_UUID.to_string(), "Patient/p1".to_string())]);
    // Unknown resource types and elements: the `reference` members are still found.
    let mut r =
        json!({"resourceType": "Foo", "bar": [{"reference": PATIENT_UUID}], "text": {"div": format!("<a href=\"{PATIENT_UUID}\"/>")}});
    assert_eq!(rewrite_references(&mut r, &map), 1);
    assert_eq!(r["bar"][0]["reference"], "Patient/p1");
    for mut v in [json!(null), json!("x"), json!([1, {"reference": 1}]), json!({"reference": {"reference": PATIENT_UUID}})] {
        rewrite_references(&mut v, &map);
    }
    let mut v = json!({"reference": {"reference": PATIENT_UUID}});
    assert_eq!(rewrite_references(&mut v, &map), 1);
    assert_eq!(v["reference"]["reference"], "Patient/p1");
    // An empty map changes nothing.
    let mut v = json!({"reference": PATIENT_UUID});
    assert_eq!(rewrite_references(&mut v, &HashMap::new()), 0);
}

#[test]
fn unresolved_placeholders_are_left_untouched() {
    // http.html#trules: "References to resources that are not part of the bundle are left untouched."
    let map = HashMap::from([(PATIENT_UUID.to_string(), "Patient/p1".to_string())]);
    let mut r = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": PATIENT_UUID}, "performer": [{"reference": BINARY_UUID}, {"reference": "urn:oid:1.2.3"}, {"reference": BINARY_UUID}]});
    assert_eq!(rewrite_references(&mut r, &map), 1);
    assert_eq!(r["performer"][0]["reference"], BINARY_UUID);
    assert_eq!(placeholder_references(&r), [BINARY_UUID, "urn:oid:1.2.3"]);
}

#[test]
fn conditional_references_are_found_and_resolved() {
    // http.html#trules, "Conditional References": `<reference value="Patient?identifier=12345"/>`.
    let mut obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": "Patient?identifier=12345"},
        "performer": [{"reference": "Practitioner?identifier=http://npi|1&active=true"}, {"reference": "Patient?identifier=12345"}, {"reference": "Practitioner/1"}],
        "contained": [{"resourceType": "Provenance", "target": [{"reference": "Device?identifier=d"}]}],
        "focus": [{"reference": "Foo?x=1"}, {"reference": "Patient?"}, {"reference": "?x=1"}]});
    let found = conditional_references(&obs);
    assert_eq!(found, ["Patient?identifier=12345", "Practitioner?identifier=http://npi|1&active=true", "Device?identifier=d"]);

    let (resource_type, query) = conditional_reference_query(&found[1]).unwrap();
    assert_eq!(resource_type, "Practitioner");
    assert_eq!(query, q(&[("identifier", "http://npi|1"), ("active", "true")]));

    // The executor searched: one match each.
    let map: HashMap<String, String> = [
        ("Patient?identifier=12345", "Patient/p9"),
        ("Practitioner?identifier=http://npi|1&active=true", "Practitioner/pr"),
        ("Device?identifier=d", "Device/d1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(rewrite_references(&mut obs, &map), 4);
    assert_eq!(obs["subject"]["reference"], "Patient/p9");
    assert_eq!(obs["performer"][0]["reference"], "Practitioner/pr");
    assert_eq!(obs["performer"][1]["reference"], "Patient/p9");
    assert_eq!(obs["contained"][0]["target"][0]["reference"], "Device/d1");
    assert!(conditional_references(&obs).is_empty());
}

#[test]
fn conditional_reference_queries_take_filtering_parameters_only() {
    assert!(is_conditional_reference("Patient?identifier=1"));
    assert!(!is_conditional_reference("Patient/1"));
    assert!(!is_conditional_reference("Patient?"));
    assert!(!is_conditional_reference("Unknown?x=1"));
    assert!(!is_conditional_reference("http://x.org/Patient?x=1"));
    assert_eq!(conditional_reference_query("Patient?name=J%C3%BCrgen").unwrap().1, q(&[("name", "Jürgen")]));
    // "Only filtering parameters are allowed; none of the parameters that control the return of resources are relevant."
    for bad in [
        "Patient?identifier=1&_count=1",
        "Patient?_sort=name",
        "Patient?_include=Patient:organization",
        "Patient/1",
        "Patient?&",
        "Patient?n=%FF",
    ] {
        assert!(conditional_reference_query(bad).is_err(), "{bad}");
    }
    // `_id` and other filtering underscore parameters are fine.
    assert!(conditional_reference_query("Patient?_id=1&_lastUpdated=gt2020").is_ok());
}

// ---------------------------------------------------------------------------------------------------------------
// Response

#[test]
fn status_lines_carry_the_reason_phrase() {
    // Bundle.entry.response.status: "The status code SHALL be the first 3 characters of the status".
    assert_eq!(status_line(200), "200 OK");
    assert_eq!(status_line(201), "201 Created");
    assert_eq!(status_line(204), "204 No Content");
    assert_eq!(status_line(304), "304 Not Modified");
    assert_eq!(status_line(400), "400 Bad Request");
    assert_eq!(status_line(404), "404 Not Found");
    assert_eq!(status_line(409), "409 Conflict");
    assert_eq!(status_line(410), "410 Gone");
    assert_eq!(status_line(412), "412 Precondition Failed");
    assert_eq!(status_line(422), "422 Unprocessable Entity");
    assert_eq!(status_line(500), "500 Internal Server Error");
    assert_eq!(status_line(299), "299");
    assert_eq!(status_line(42), "42");
}

#[test]
fn response_bundle_keeps_request_order() {
    let at = Utc.with_ymd_and_hms(2014, 8, 18, 1, 43, 33).unwrap();
    // Executed DELETE first, then POST, then GET; answered in bundle order.
    let entries = vec![
        EntryResponse::new(2, 204),
        EntryResponse::new(0, 201)
            .with_location("Patient/12423/_history/1")
            .with_version(1, at)
            .with_full_url("http://example.org/fhir/Patient/12423"),
        EntryResponse::new(1, 200).with_resource(json!({"resourceType": "Bundle", "type": "searchset", "total": 0})),
    ];
    let b = response_bundle(BundleKind::Transaction, entries);
    assert_eq!(
        b,
        json!({"resourceType": "Bundle", "type": "transaction-response", "entry": [
            {"fullUrl": "http://example.org/fhir/Patient/12423",
             "response": {"status": "201 Created", "location": "Patient/12423/_history/1", "etag": "W/\"1\"", "lastModified": "2014-08-18T01:43:33.000Z"}},
            {"resource": {"resourceType": "Bundle", "type": "searchset", "total": 0}, "response": {"status": "200 OK"}},
            {"response": {"status": "204 No Content"}}
        ]})
    );
    let keys: Vec<&String> = b.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["resourceType", "type", "entry"]);
}

#[test]
fn a_batch_response_answers_invalid_entries_with_their_outcome() {
    let parsed = parse(&bundle("batch", vec![req("GET", "Patient/1"), req("GET", "Foo/1")]), BASE).unwrap();
    let responses: Vec<EntryResponse> = parsed
        .entries
        .iter()
        .map(|e| match &e.plan {
            Plan::Request(_) => EntryResponse::new(e.index, 404)
                .with_outcome(crate::outcome::operation_outcome(&[Issue::error("not-found", "resource not found")])),
            Plan::Invalid(issues) => EntryResponse::invalid(e.index, issues),
        })
        .collect();
    let b = response_bundle(parsed.kind, responses);
    assert_eq!(b["type"], "batch-response");
    assert_eq!(b["entry"][0]["response"]["status"], "404 Not Found");
    assert_eq!(b["entry"][0]["response"]["outcome"]["issue"][0]["code"], "not-found");
    assert_eq!(b["entry"][1]["response"]["status"], "400 Bad Request");
    let outcome = &b["entry"][1]["response"]["outcome"];
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["severity"], "error");
    assert_eq!(outcome["issue"][0]["expression"][0], "Bundle.entry[1].request.url");
}

#[test]
fn an_empty_response_has_no_entry_array() {
    // FHIR JSON forbids empty arrays.
    assert_eq!(response_bundle(BundleKind::Batch, vec![]), json!({"resourceType": "Bundle", "type": "batch-response"}));
}

#[test]
fn kinds_have_their_codes() {
    assert_eq!(BundleKind::Batch.code(), "batch");
    assert_eq!(BundleKind::Transaction.code(), "transaction");
    assert_eq!(BundleKind::Batch.response_code(), "batch-response");
    assert_eq!(BundleKind::Transaction.response_code(), "transaction-response");
}

// ---------------------------------------------------------------------------------------------------------------
// Robustness

#[test]
fn hostile_inputs_never_panic() {
    let values = [
        json!(null),
        json!(true),
        json!(1),
        json!("x"),
        json!([]),
        json!({}),
        json!({"method": "GET"}),
        json!({"request": null}),
        json!({"request": {"method": null, "url": null}}),
        json!({"request": {"method": "GET", "url": "?"}}),
        json!({"request": {"method": "GET", "url": "?&&"}}),
        json!({"request": {"method": "GET", "url": "%"}}),
        json!({"request": {"method": "GET", "url": "Patient?%"}}),
        json!({"request": {"method": "GET", "url": "Patient/%E2%82"}}),
        json!({"request": {"method": "GET", "url": "http://example.org/fhir"}}),
        json!({"request": {"method": "GET", "url": "http://example.org/fhir/"}}),
        json!({"request": {"method": "GET", "url": ":"}}),
        json!({"request": {"method": "GET", "url": "////"}}),
        json!({"request": {"method": "GET", "url": "ü/ö"}}),
        json!({"request": {"method": "PATCH", "url": "Patient/1"}, "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": 5}}),
        json!({"request": {"method": "POST", "url": "Patient"}, "resource": {"resourceType": null}}),
        json!({"request": {"method": "PUT", "url": "Patient/1"}, "resource": {"resourceType": "Patient", "id": 1}}),
        json!({"request": {"method": "POST", "url": "Patient", "ifNoneExist": "%zz"}, "resource": {"resourceType": "Patient"}}),
        json!({"fullUrl": "urn:oid:", "request": {"method": "GET", "url": "metadata"}}),
        json!({"fullUrl": "urn:uuid:----", "request": {"method": "GET", "url": "metadata"}}),
        json!({"fullUrl": "http://", "request": {"method": "GET", "url": "metadata"}}),
        json!({"fullUrl": "ht", "request": {"method": "GET", "url": "metadata"}}),
    ];
    for kind in ["batch", "transaction"] {
        for value in &values {
            let _ = parse(&bundle(kind, vec![value.clone()]), BASE);
            let _ = parse(&bundle(kind, vec![value.clone(), value.clone()]), BASE);
        }
    }
    // Deep nesting in a resource: the parse copies it, the rewrite stops at its depth limit.
    // (Built by hand: `json!` would serialise the nested value recursively.)
    let mut deep = json!({"reference": PATIENT_UUID});
    for _ in 0..1000 {
        let mut obj = serde_json::Map::new();
        obj.insert("a".into(), Value::Array(vec![deep]));
        deep = Value::Object(obj);
    }
    let mut resource = json!({"resourceType": "Basic", "code": {"text": "x"}});
    resource["extension"] = Value::Array(vec![deep]);
    let map = HashMap::from([(PATIENT_UUID.to_string(), "Patient/p1".to_string())]);
    assert_eq!(rewrite_references(&mut resource, &map), 0);
    assert!(conditional_references(&resource).is_empty());
    // serde_json's own drop is recursive; dismantle the value iteratively to keep the test's stack small.
    let mut stack = vec![resource];
    while let Some(mut v) = stack.pop() {
        match &mut v {
            Value::Object(o) => stack.extend(std::mem::take(o).into_iter().map(|(_, v)| v)),
            Value::Array(a) => stack.append(a),
            _ => {}
        }
    }
}

#[test]
fn diagnostics_never_echo_values() {
    let secret = "SECRET-VALUE";
    let entries = vec![
        req("GET", &format!("Foo{secret}/1")),
        req("GET", &format!("Patient/{secret}_x")),
        with_full_url(req("GET", "metadata"), &format!("urn:uuid:{secret}")),
        with_resource(req("PUT", "Patient/1"), json!({"resourceType": "Patient", "id": secret})),
        with_resource(req("POST", "Patient"), json!({"resourceType": secret})),
    ];
    let issues = parse(&bundle("transaction", entries), BASE).unwrap_err();
    assert_eq!(issues.len(), 5);
    for issue in issues {
        assert!(!issue.diagnostics.contains(secret), "{}", issue.diagnostics);
    }
}
