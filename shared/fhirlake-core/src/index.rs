//! The search index entries of one stored version: a listing entry for its type, an entry per
//! equality term (blinded with the datastore's [`IndexKey`]) and per ordered value of each of
//! the type's search parameters, and an entry in the partition of each compartment it belongs
//! to (`Patient/p1`'s partition lists every resource whose compartment parameters reference
//! it, so `$everything` reads one partition). Key patterns are in [`crate::layout`]; `docs/search.md`
//! explains how entries become visible with their version and why that makes them consistent.

use std::sync::OnceLock;

use fhirlake_fhir::registry::{self, SearchParamType};
use fhirlake_fhir::resource as fhir_resource;
use fhirlake_fhir::search::terms::{index_terms, IndexTerm};
use fhirlake_fhir::search::{values, SearchValue};
use fhirlake_ports::{AttrValue, Item, Key};
use serde_json::Value;

pub use crate::crypto::IndexKey;
use crate::layout;

/// Attribute of an index entry holding the version it belongs to.
pub const VERSION_ATTR: &str = "v";
/// Attribute of a version item holding the token of the write that stored it.
pub const WRITE_TOKEN_ATTR: &str = "wt";

/// Whether a version item was stored by the write whose token a history or index entry carries:
/// the rule that makes entries of failed or losing writes invisible.
pub fn stored_by(version_item: &Item, token: &str) -> bool {
    version_item.get_str(WRITE_TOKEN_ATTR) == Some(token)
}

/// The version an entry names, as found in the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRef {
    /// The logical id.
    pub id: String,
    /// The version number.
    pub version: u64,
    /// The write token of that version.
    pub token: String,
}

impl EntryRef {
    /// Reads an index entry item; `None` when it is not one.
    pub fn from_item(item: &Item) -> Option<Self> {
        let (id, token) = layout::parse_entry_sk(&item.key.sk)?;
        let version = u64::try_from(item.get_i64(VERSION_ATTR)?).ok()?;
        Some(EntryRef { id: id.to_string(), version, token: token.to_string() })
    }
}

/// What one index entry records, before it has a key.
enum Indexed {
    /// The type listing.
    Listing,
    /// A term of a parameter.
    Term(&'static str, IndexTerm),
    /// Membership of a compartment (`Patient`, `p1`).
    Member(&'static str, String),
}

/// A search parameter a version of its type is indexed by, and the compartments its reference
/// values put the resource in.
struct IndexedParam {
    extractor: values::Extractor,
    compartments: Vec<&'static str>,
}

/// The parameters each version of `resource_type` is indexed by: every parameter with an
/// expression for the type, but composites and special ones. Worked out once per type.
fn indexed_params(resource_type: &str) -> &'static [IndexedParam] {
    static PLANS: OnceLock<Vec<OnceLock<Vec<IndexedParam>>>> = OnceLock::new();
    let types = registry::resource_types();
    let Ok(t) = types.binary_search(&resource_type) else { return &[] };
    let plans = PLANS.get_or_init(|| types.iter().map(|_| OnceLock::new()).collect());
    plans[t].get_or_init(|| {
        values::extractors(types[t])
            .into_iter()
            .filter(|e| {
                let param = e.param();
                !matches!(param.kind, SearchParamType::Composite | SearchParamType::Special) && param.expression_for(types[t]).is_some()
            })
            .map(|extractor| {
                let code = extractor.param().code;
                let compartments = if extractor.param().kind == SearchParamType::Reference {
                    registry::compartment_types().filter(|c| registry::compartment_params(c, types[t]).contains(&code)).collect()
                } else {
                    Vec::new()
                };
                IndexedParam { extractor, compartments }
            })
            .collect()
    })
}

/// Calls `each` with what each entry of a version of `resource` records, in entry order: the
/// listing, every term of every indexed parameter, and every compartment membership.
fn indexed(resource_type: &str, resource: &Value, mut each: impl FnMut(Indexed)) {
    each(Indexed::Listing);
    let mut compartments = std::collections::BTreeSet::new();
    for indexed in indexed_params(resource_type) {
        let param = indexed.extractor.param();
        let found = indexed.extractor.extract(resource);
        compartments.extend(members(&indexed.compartments, &found));
        for term in index_terms(param, &found) {
            each(Indexed::Term(param.code, term));
        }
    }
    for (compartment, owner) in compartments {
        each(Indexed::Member(compartment, owner));
    }
}

/// How many index entries a version of `resource` writes (besides its two history entries).
pub fn entry_count(resource_type: &str, resource: &Value) -> usize {
    let mut count = 0;
    indexed(resource_type, resource, |_| count += 1);
    count
}

/// Every index entry of the version `version` (write token `token`) of `resource`, equality
/// terms blinded with `key`.
pub fn entries(key: &IndexKey, ds: &str, resource_type: &str, id: &str, version: u64, token: &str, resource: &Value) -> Vec<Item> {
    let entry_key = |indexed: Indexed| match indexed {
        Indexed::Listing => Key::new(layout::listing_pk(ds, resource_type), layout::entry_sk(id, token)),
        Indexed::Term(code, IndexTerm::Exact(term)) => {
            let blinded = key.blind(resource_type, code, &term);
            Key::new(layout::term_pk(ds, resource_type, code, &blinded), layout::entry_sk(id, token))
        }
        Indexed::Term(code, IndexTerm::Ordered { unit, side, span, key: order }) => {
            let unit = unit.map(|u| key.blind(resource_type, code, &u));
            Key::new(layout::ordered_pk(ds, resource_type, code, side, span, unit.as_deref()), layout::ordered_sk(&order, id, token))
        }
        Indexed::Member(compartment, owner) => {
            Key::new(layout::compartment_pk(ds, compartment, &owner), layout::compartment_sk(resource_type, id, token))
        }
    };
    let mut items = Vec::with_capacity(ENTRIES_HINT);
    indexed(resource_type, resource, |i| items.push(Item::new(entry_key(i)).with(VERSION_ATTR, AttrValue::N(version as i64))));
    items
}

/// Room reserved for the entries of a version: a typical resource writes a few dozen.
const ENTRIES_HINT: usize = 32;

/// The owners of the `compartment` compartments (`Patient` → patient ids) `resource` belongs
/// to: the same rule that writes its compartment entries.
pub fn compartment_owners_of(compartment: &str, resource_type: &str, resource: &Value) -> std::collections::BTreeSet<String> {
    let mut owners = std::collections::BTreeSet::new();
    for indexed in indexed_params(resource_type).iter().filter(|p| p.compartments.contains(&compartment)) {
        let found = indexed.extractor.extract(resource);
        owners.extend(members(&indexed.compartments, &found).filter(|(c, _)| *c == compartment).map(|(_, owner)| owner));
    }
    owners
}

/// The compartments among `compartments` (`Patient`, `p1`) that reference values point into.
fn members<'a>(compartments: &'a [&'static str], found: &'a [SearchValue]) -> impl Iterator<Item = (&'static str, String)> + 'a {
    found.iter().filter_map(move |value| {
        let SearchValue::Reference { reference, .. } = value else { return None };
        let (target, owner) = reference.split_once('/')?;
        let compartment = compartments.iter().find(|c| **c == target)?;
        fhir_resource::is_valid_id(owner).then(|| (*compartment, owner.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_version_lists_itself_in_the_compartments_it_references() {
        let key = IndexKey::from_secret(&[7; 32]).expect("an index key");
        let observation = json!({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "Patient/p1"}, "encounter": {"reference": "Encounter/e1"},
            "performer": [{"reference": "Practitioner/dr"}, {"reference": "Patient/p1"}]});
        let items = entries(&key, "ds", "Observation", "o1", 3, "00ff", &observation);
        assert_eq!(items.len(), entry_count("Observation", &observation));
        let members: Vec<&Key> = items.iter().map(|i| &i.key).filter(|k| k.pk.starts_with("c#")).collect();
        let expected = [
            ("c#ds#Encounter#e1", "Observation#o1#00ff"),
            ("c#ds#Patient#p1", "Observation#o1#00ff"),
            ("c#ds#Practitioner#dr", "Observation#o1#00ff"),
        ];
        assert_eq!(members, expected.iter().map(|(pk, sk)| Key::new(*pk, *sk)).collect::<Vec<_>>().iter().collect::<Vec<_>>());
        assert!(items.iter().all(|i| i.get_i64(VERSION_ATTR) == Some(3)));
        assert_eq!(layout::compartment_member_type(&members[0].sk), Some("Observation"));
    }

    #[test]
    fn entries_are_keyed_exactly() {
        let key = IndexKey::from_secret(&[7; 32]).expect("an index key");
        let observation = json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}, "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2024-01-05T10:00:00Z",
            "valueQuantity": {"value": 72.5, "unit": "beats/min", "system": "http://unitsofmeasure.org", "code": "/min"}});
        let items = entries(&key, "ds0123", "Observation", "o1", 1, "00ff00ff00ff00ff", &observation);
        let keys: Vec<(&str, &str)> = items.iter().map(|i| (i.key.pk.as_str(), i.key.sk.as_str())).collect();
        let expected = [
            ("l#ds0123#Observation", "o1#00ff00ff00ff00ff"),
            ("x#ds0123#Observation#_id#ZzyIlvlB7X7f78GQ", "o1#00ff00ff00ff00ff"),
            ("x#ds0123#Observation#_id#cdDFQ4UUzbyzGdBM", "o1#00ff00ff00ff00ff"),
            ("x#ds0123#Observation#code#i7SelUR-PqKfKn2l", "o1#00ff00ff00ff00ff"),
            ("x#ds0123#Observation#code#scs-e0zk1RDpFvzs", "o1#00ff00ff00ff00ff"),
            ("x#ds0123#Observation#combo-code#5-1hvDl63yT0x6dR", "o1#00ff00ff00ff00ff"),
            ("x#ds0123#Observation#combo-code#p2DneOW3PVSZI7hZ", "o1#00ff00ff00ff00ff"),
            ("o#ds0123#Observation#combo-value-quantity#l", "P5002725#o1#00ff00ff00ff00ff"),
            ("o#ds0123#Observation#combo-value-quantity#l#uVIUGIeqAtypDdBh", "P5002725#o1#00ff00ff00ff00ff"),
            ("o#ds0123#Observation#combo-value-quantity#l#7sjWFrKBx8MWrhHU", "P5002725#o1#00ff00ff00ff00ff"),
            ("o#ds0123#Observation#combo-value-quantity#l#DiDJ8vGcOd71VIAu", "P5002725#o1#00ff00ff00ff00ff"),
            ("o#ds0123#Observation#date#ld", "063840045600000000#o1#00ff00ff00ff00ff"),
            ("o#ds0123#Observation#date#hd", "063840045600999999#o1#00ff00ff00ff00ff"),
            ("x#ds0123#Observation#patient#smsRY2wOX8mpKFZ2", "o1#00ff00ff00ff00ff"),
            ("x#ds0123#Observation#status#6rB3dRtCBmIoDFb9", "o1#00ff00ff00ff00ff"),
            ("x#ds0123#Observation#status#59QtHsm-ezliFe9w", "o1#00ff00ff00ff00ff"),
            ("x#ds0123#Observation#subject#3vHMhQP4FTiPR6iK", "o1#00ff00ff00ff00ff"),
            ("o#ds0123#Observation#value-quantity#l", "P5002725#o1#00ff00ff00ff00ff"),
            ("o#ds0123#Observation#value-quantity#l#UUFDBOGBpMLY0mPS", "P5002725#o1#00ff00ff00ff00ff"),
            ("o#ds0123#Observation#value-quantity#l#mlreOHBuMGMRmk9b", "P5002725#o1#00ff00ff00ff00ff"),
            ("o#ds0123#Observation#value-quantity#l#PAUyvPCraNu1sUOE", "P5002725#o1#00ff00ff00ff00ff"),
            ("c#ds0123#Patient#p1", "Observation#o1#00ff00ff00ff00ff"),
        ];
        assert_eq!(keys, expected);
        assert_eq!(entry_count("Observation", &observation), expected.len());
        assert!(items.iter().all(|i| i.attrs.iter().count() == 1 && i.get_i64(VERSION_ATTR) == Some(1)));
    }
}
