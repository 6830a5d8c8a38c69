//! Server-maintained parts of a resource: logical ids, `meta.versionId`, `meta.lastUpdated`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

/// True when `id` is a valid FHIR logical id: `[A-Za-z0-9\-\.]{1,64}`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Formats an instant as FHIR `instant` with millisecond precision (`2024-01-02T03:04:05.678Z`).
pub fn format_instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Formats an instant for the HTTP `Last-Modified` header (IMF-fixdate).
pub fn http_date(at: DateTime<Utc>) -> String {
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Sets `id`, `meta.versionId` and `meta.lastUpdated`, keeping the rest of `meta`
/// (profile, tag, security, source) as the client sent it. `id` is placed right after
/// `resourceType` and `meta` after `id`, as FHIR's JSON examples order them.
pub fn stamp(resource: &mut Value, id: &str, version: u64, last_updated: DateTime<Utc>) {
    let Value::Object(map) = resource else { return };
    let mut meta = match map.remove("meta") {
        Some(Value::Object(meta)) => meta,
        _ => Map::new(),
    };
    meta.shift_remove("versionId");
    meta.shift_remove("lastUpdated");
    let mut stamped_meta = Map::with_capacity(meta.len() + 2);
    stamped_meta.insert("versionId".into(), Value::String(version.to_string()));
    stamped_meta.insert("lastUpdated".into(), Value::String(format_instant(last_updated)));
    stamped_meta.extend(meta);

    let resource_type = map.remove("resourceType");
    map.remove("id");
    let rest = std::mem::take(map);
    if let Some(rt) = resource_type {
        map.insert("resourceType".into(), rt);
    }
    map.insert("id".into(), Value::String(id.to_string()));
    map.insert("meta".into(), Value::Object(stamped_meta));
    map.extend(rest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    #[test]
    fn ids_follow_the_spec_pattern() {
        assert!(is_valid_id("abc-123.X"));
        assert!(is_valid_id(&"a".repeat(64)));
        assert!(!is_valid_id(&"a".repeat(65)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("a/b"));
        assert!(!is_valid_id("a_b"));
    }

    #[test]
    fn stamp_replaces_server_fields_and_keeps_client_meta() {
        let at = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
        let mut r = json!({"name": [{"family": "X"}], "resourceType": "Patient", "id": "old",
            "meta": {"versionId": "9", "lastUpdated": "2000-01-01T00:00:00Z", "tag": [{"code": "t"}]}});
        stamp(&mut r, "p1", 3, at);
        assert_eq!(r["id"], "p1");
        assert_eq!(r["meta"]["versionId"], "3");
        assert_eq!(r["meta"]["lastUpdated"], "2024-01-02T03:04:05.000Z");
        assert_eq!(r["meta"]["tag"][0]["code"], "t");
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["resourceType", "id", "meta", "name"]);
    }

    #[test]
    fn http_dates_are_imf_fixdate() {
        let at = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(http_date(at), "Tue, 02 Jan 2024 03:04:05 GMT");
    }
}
