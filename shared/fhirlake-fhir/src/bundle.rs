//! Bundles assembled from stored JSON without re-parsing it: each entry's resource is spliced in
//! as raw JSON, so a page of history costs one serialisation of the envelope.

use serde::Serialize;
use serde_json::value::RawValue;

/// One `Bundle.link`.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    /// `self`, `next`, `previous`, ...
    pub relation: &'static str,
    /// Absolute URL.
    pub url: String,
}

/// One entry of a history bundle.
#[derive(Debug, Clone)]
pub struct HistoryEntry<'a> {
    /// Absolute URL of the resource (`{base}/{type}/{id}`).
    pub full_url: String,
    /// The version's JSON, absent for a deletion.
    pub resource: Option<&'a RawValue>,
    /// HTTP verb of the interaction (`POST`, `PUT`, `PATCH`, `DELETE`).
    pub method: &'static str,
    /// Relative URL of the interaction (`Patient` for a create, `Patient/123` otherwise).
    pub url: String,
    /// Response status (`201 Created`, `200 OK`, `204 No Content`).
    pub status: &'static str,
    /// The version's ETag (`W/"3"`).
    pub etag: String,
    /// The version's `meta.lastUpdated`.
    pub last_modified: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BundleOut<'a> {
    resource_type: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    link: &'a [Link],
    entry: Vec<EntryOut<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryOut<'a> {
    full_url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<&'a RawValue>,
    request: RequestOut<'a>,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
struct RequestOut<'a> {
    method: &'a str,
    url: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    status: &'a str,
    etag: &'a str,
    last_modified: &'a str,
}

/// Serialises a `history` Bundle.
pub fn history_bundle(entries: &[HistoryEntry<'_>], links: &[Link], total: Option<u64>) -> Vec<u8> {
    let bundle = BundleOut {
        resource_type: "Bundle",
        kind: "history",
        total,
        link: links,
        entry: entries
            .iter()
            .map(|e| EntryOut {
                full_url: &e.full_url,
                resource: e.resource,
                request: RequestOut { method: e.method, url: &e.url },
                response: ResponseOut { status: e.status, etag: &e.etag, last_modified: &e.last_modified },
            })
            .collect(),
    };
    // Serialising plain structs and valid raw JSON cannot fail.
    serde_json::to_vec(&bundle).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn history_bundle_splices_raw_resources() {
        let raw = RawValue::from_string(r#"{"resourceType":"Patient","id":"p"}"#.to_string()).unwrap();
        let entries = vec![
            HistoryEntry {
                full_url: "http://x/Patient/p".into(),
                resource: None,
                method: "DELETE",
                url: "Patient/p".into(),
                status: "204 No Content",
                etag: "W/\"2\"".into(),
                last_modified: "2024-01-01T00:00:01.000Z".into(),
            },
            HistoryEntry {
                full_url: "http://x/Patient/p".into(),
                resource: Some(&raw),
                method: "POST",
                url: "Patient".into(),
                status: "201 Created",
                etag: "W/\"1\"".into(),
                last_modified: "2024-01-01T00:00:00.000Z".into(),
            },
        ];
        let links = [Link { relation: "self", url: "http://x/Patient/p/_history".into() }];
        let v: Value = serde_json::from_slice(&history_bundle(&entries, &links, Some(2))).unwrap();
        assert_eq!(v["type"], "history");
        assert_eq!(v["total"], 2);
        assert!(v["entry"][0].get("resource").is_none());
        assert_eq!(v["entry"][1]["resource"]["id"], "p");
        assert_eq!(v["entry"][1]["response"]["etag"], "W/\"1\"");
    }
}

/// One entry of a searchset bundle.
#[derive(Debug, Clone)]
pub struct SearchEntry<'a> {
    /// Absolute URL of the resource (`{base}/{type}/{id}`).
    pub full_url: String,
    /// The resource's JSON.
    pub resource: &'a RawValue,
    /// `match`, `include` or `outcome`.
    pub mode: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SearchsetOut<'a> {
    resource_type: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    link: &'a [Link],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entry: Vec<SearchEntryOut<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SearchEntryOut<'a> {
    full_url: &'a str,
    resource: &'a RawValue,
    search: SearchModeOut,
}

#[derive(Serialize)]
struct SearchModeOut {
    mode: &'static str,
}

/// Serialises a `searchset` Bundle (search.html#return).
pub fn searchset_bundle(entries: &[SearchEntry<'_>], links: &[Link], total: Option<u64>) -> Vec<u8> {
    let bundle = SearchsetOut {
        resource_type: "Bundle",
        kind: "searchset",
        total,
        link: links,
        entry: entries
            .iter()
            .map(|e| SearchEntryOut { full_url: &e.full_url, resource: e.resource, search: SearchModeOut { mode: e.mode } })
            .collect(),
    };
    serde_json::to_vec(&bundle).unwrap_or_default()
}
