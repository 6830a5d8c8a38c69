//! Members of JSON objects found by name, the way search extraction and simple paths look them
//! up: by comparing keys on small objects (nearly every FHIR element has a handful of members,
//! and serde_json's ordered map hashes each name with SipHash), by hashing on large ones.

use serde_json::{Map, Value};

/// Objects with more members than this are searched by hashing; smaller ones (nearly every
/// FHIR element) by comparing keys, which is cheaper than hashing the names looked up.
pub(crate) const SCAN_LIMIT: usize = 32;

/// The members of `o` named `names` (distinct names): `names.map(|name| o.get(name))`.
pub(crate) fn lookup<'a, const N: usize>(o: &'a Map<String, Value>, names: [&str; N]) -> [Option<&'a Value>; N] {
    if o.len() > SCAN_LIMIT {
        return names.map(|name| o.get(name));
    }
    let (mut found, mut missing) = ([None; N], N);
    for (key, value) in o {
        if let Some(i) = names.iter().position(|name| same_key(name, key)) {
            found[i] = Some(value);
            missing -= 1;
            if missing == 0 {
                break;
            }
        }
    }
    found
}

/// `a == b`, checking the lengths and the first bytes before comparing the rest (most keys
/// compared differ in one or the other).
fn same_key(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().first() == b.as_bytes().first() && a == b
}

/// The member `name` of `o`: `o.get(name)`.
pub(crate) fn member<'a>(o: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let [found] = lookup(o, [name]);
    found
}
