//! The fast path: "compiled" simple paths (`Type.a.b`, `Type.value as Quantity` on a choice element, `A.x | B.y`) walked directly over the JSON.
//!
//! Most R4 search-parameter expressions are of this shape. The walk gives the same answer as the general evaluator
//! (the tests check both on every sample) without building the evaluator's collections.

use serde_json::{Map, Value};

use super::ast::{BinOp, Expr};
use super::types::{choice_key, choice_suffix, is_of_type, strip_namespace};
use crate::members::{lookup, SCAN_LIMIT};

/// A union of simple paths.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    paths: Vec<SimplePath>,
}

#[derive(Debug, Clone)]
struct SimplePath {
    /// The leading type name: the resource type, or `Resource` / `DomainResource`.
    root: String,
    steps: Vec<Step>,
}

#[derive(Debug, Clone)]
enum Step {
    /// `.name`: the member, or a choice element `name[x]` whichever type it has.
    Member(Member),
    /// `.name as T` on a choice element: the single key `nameT` (or `name` filtered by type).
    Choice {
        /// The element, and its `_name` sibling.
        member: Member,
        /// The key `nameT`, and its `_nameT` sibling.
        typed: Member,
        /// The choice type `T` as its key spells it (`Quantity`), when it is one.
        suffix: Option<&'static str>,
        /// The type `T` as written.
        ty: String,
    },
}

/// A member name and the name of its `_name` sibling (a primitive's id and extensions).
#[derive(Debug, Clone)]
struct Member {
    name: String,
    sibling: String,
}

impl Member {
    fn new(name: &str) -> Self {
        Member { name: name.to_string(), sibling: format!("_{name}") }
    }
}

/// An element reached by the walk: its JSON, the `_name` sibling of a primitive, and the choice type when known.
#[derive(Clone, Copy)]
struct Node<'a> {
    value: Option<&'a Value>,
    ext: Option<&'a Value>,
    ty: Option<&'static str>,
}

/// Compiles `e` if it is a union of simple paths.
pub(crate) fn compile(e: &Expr) -> Option<Compiled> {
    let mut paths = Vec::new();
    collect(e, &mut paths)?;
    Some(Compiled { paths })
}

fn collect(e: &Expr, out: &mut Vec<SimplePath>) -> Option<()> {
    if let Expr::Binary(BinOp::Union, l, r) = e {
        collect(l, out)?;
        return collect(r, out);
    }
    out.push(path(e)?);
    Some(())
}

fn path(e: &Expr) -> Option<SimplePath> {
    match e {
        Expr::Identifier(t) if t.starts_with(|c: char| c.is_ascii_uppercase()) => Some(SimplePath { root: t.clone(), steps: Vec::new() }),
        Expr::Member(base, name) if !name.starts_with(|c: char| c.is_ascii_uppercase()) => {
            let mut p = path(base)?;
            p.steps.push(Step::Member(Member::new(name)));
            Some(p)
        }
        Expr::As(base, ty) => typed(path(base)?, ty),
        Expr::Call(Some(base), f, args) if (f == "as" || f == "ofType") && args.len() == 1 => {
            let ty = match &args[0] {
                Expr::Identifier(t) => t.clone(),
                _ => return None,
            };
            typed(path(base)?, &ty)
        }
        _ => None,
    }
}

fn typed(mut p: SimplePath, ty: &str) -> Option<SimplePath> {
    if let Some(Step::Member(member)) = p.steps.last() {
        if let Some(key) = choice_key(&member.name, ty).filter(|_| is_choice_element(&p)) {
            let (member, suffix) = (member.clone(), choice_suffix(&key, &member.name));
            p.steps.pop();
            p.steps.push(Step::Choice { member, typed: Member::new(&key), suffix, ty: ty.to_string() });
            return Some(p);
        }
    }
    // Other type filters need the model's element types: left to the general evaluator.
    None
}

/// Whether the path's last member is a choice element (`Observation.value` is `value[x]`) in the model.
fn is_choice_element(p: &SimplePath) -> bool {
    let mut path = p.root.clone();
    for step in &p.steps {
        match step {
            Step::Member(m) => {
                path.push('.');
                path.push_str(&m.name);
            }
            Step::Choice { .. } => return false,
        }
    }
    path.push_str("[x]");
    crate::registry::element_by_path(&path).is_some_and(|e| e.choice)
}

impl Compiled {
    /// Evaluates against `resource`, with FHIRPath union semantics (duplicates removed).
    pub(crate) fn evaluate(&self, resource: &Value) -> Vec<Value> {
        self.select(resource).into_iter().cloned().collect()
    }

    /// The elements of `resource` the paths select, borrowed, duplicates removed.
    pub(crate) fn select<'a>(&self, resource: &'a Value) -> Vec<&'a Value> {
        let [only] = self.paths.as_slice() else {
            let mut out: Vec<&Value> = Vec::new();
            for p in &self.paths {
                for v in p.walk(resource) {
                    if !out.iter().any(|o| super::eval::values_equal(o, v) == Some(true)) {
                        out.push(v);
                    }
                }
            }
            return out;
        };
        only.walk(resource)
    }
}

impl SimplePath {
    /// The elements of `resource` the path selects, in order.
    fn walk<'a>(&self, resource: &'a Value) -> Vec<&'a Value> {
        if !self.root_matches(resource) {
            return Vec::new();
        }
        let mut cur = vec![Node { value: Some(resource), ext: None, ty: None }];
        for step in &self.steps {
            // Most paths miss: no allocation until a step finds something.
            let mut next = Vec::new();
            for n in &cur {
                // A primitive's id and extensions live in its `_name` sibling.
                let Some(Value::Object(o)) = n.value.filter(|v| v.is_object()).or(n.ext) else { continue };
                step.apply(o, &mut next);
            }
            if next.is_empty() {
                return Vec::new();
            }
            cur = next;
        }
        cur.into_iter().filter_map(|n| n.value.filter(|v| !v.is_null())).collect()
    }

    /// Whether `resource` is of the root type: `is_of_type(None, resource, root)`, without
    /// hashing `resourceType` (twice) for the usual case, a resource.
    fn root_matches(&self, resource: &Value) -> bool {
        let actual = match resource {
            Value::Object(o) => lookup(o, ["resourceType"])[0].and_then(Value::as_str),
            _ => None,
        };
        let Some(actual) = actual else { return is_of_type(None, resource, &self.root) };
        let wanted = strip_namespace(&self.root);
        actual.eq_ignore_ascii_case(wanted)
            || wanted == "Resource"
            || (wanted == "DomainResource" && actual != "Bundle" && actual != "Parameters")
    }
}

impl Step {
    /// Appends the nodes this step reaches from the object `o`.
    fn apply<'a>(&self, o: &'a Map<String, Value>, out: &mut Vec<Node<'a>>) {
        match self {
            Step::Member(Member { name, sibling }) => {
                let [value, ext] = lookup(o, [name, sibling]);
                if value.is_some() || ext.is_some() {
                    push_member(out, value, ext, None);
                } else {
                    for (key, value) in o {
                        // A choice key goes on with an upper-case letter where the name ends.
                        if !key.as_bytes().get(name.len()).is_some_and(u8::is_ascii_uppercase) {
                            continue;
                        }
                        if let Some(t) = choice_suffix(key, name) {
                            push_member(out, Some(value), underscored(o, key), Some(t));
                        }
                    }
                }
            }
            Step::Choice { member, typed, suffix, ty } => {
                let [value, ext, typed_value, typed_ext] = lookup(o, [&member.name, &member.sibling, &typed.name, &typed.sibling]);
                if value.is_some() {
                    let mut tmp = Vec::new();
                    push_member(&mut tmp, value, ext, None);
                    out.extend(tmp.into_iter().filter(|n| n.value.is_some_and(|v| is_of_type(n.ty, v, ty))));
                } else {
                    push_member(out, typed_value, typed_ext, *suffix);
                }
            }
        }
    }
}

/// The `_key` sibling of member `key` of `o`.
fn underscored<'a>(o: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    if o.len() > SCAN_LIMIT {
        return o.get(&format!("_{key}"));
    }
    o.iter().find(|(k, _)| k.len() == key.len() + 1 && k.strip_prefix('_') == Some(key)).map(|(_, v)| v)
}

/// The nodes of a member whose value is `value` and whose `_key` sibling is `ext` (each item
/// of an array).
fn push_member<'a>(out: &mut Vec<Node<'a>>, value: Option<&'a Value>, ext: Option<&'a Value>, ty: Option<&'static str>) {
    match (value, ext) {
        (Some(Value::Array(items)), ext) => {
            let exts = ext.and_then(Value::as_array);
            for (i, v) in items.iter().enumerate() {
                out.push(Node { value: Some(v), ext: exts.and_then(|a| a.get(i)).filter(|e| !e.is_null()), ty });
            }
        }
        (None, Some(Value::Array(exts))) => {
            out.extend(exts.iter().filter(|e| !e.is_null()).map(|e| Node { value: None, ext: Some(e), ty }));
        }
        (value, ext) if value.is_some() || ext.is_some() => out.push(Node { value, ext, ty }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::fhirpath::Expression;

    /// `resource` with `extra` more members (`pad0`, `pad1`, …) after its own.
    fn padded(resource: &Value, extra: usize) -> Value {
        let mut out = resource.clone();
        if let Value::Object(o) = &mut out {
            for i in 0..extra {
                o.insert(format!("pad{i}"), json!(i));
            }
        }
        out
    }

    #[test]
    fn small_and_large_objects_give_the_general_evaluators_answer() {
        let samples = [
            json!({"resourceType": "Observation", "id": "o1", "status": "final",
                "valueQuantity": {"value": 5, "unit": "mg"}, "_status": {"id": "s"},
                "effectivePeriod": {"start": "2020"}, "code": {"coding": [{"code": "a"}, {"code": "b", "_code": {"id": "x"}}]},
                "component": [{"valueString": "s", "_valueString": {"id": "v"}}, {"valueCodeableConcept": {"text": "t"}}]}),
            json!({"resourceType": "Patient", "id": "p", "name": [{"given": ["a", "b"], "_given": [null, {"id": "g"}]}],
                "_birthDate": {"extension": [{"url": "u"}]}, "deceasedBoolean": true, "multipleBirthInteger": 2}),
            json!({"resourceType": "Condition", "onsetAge": {"value": 3}, "abatementString": "x"}),
            json!({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient", "id": "q"}}]}),
        ];
        let expressions = [
            "Observation.status",
            "Observation.value as Quantity",
            "(Observation.value as Quantity).value",
            "Observation.effective",
            "Observation.code.coding.code",
            "Observation.component.value.ofType(CodeableConcept)",
            "Observation.component.value",
            "Patient.name.given",
            "Patient.birthDate",
            "Patient.deceased",
            "Patient.multipleBirth",
            "Condition.onset.as(Age) | Condition.onset.as(Range)",
            "Condition.abatement",
            "Resource.id",
            "DomainResource.id",
            "Bundle.entry.resource",
        ];
        for src in expressions {
            let e = Expression::parse(src).expect("parses");
            assert!(e.is_compiled(), "{src}");
            for sample in &samples {
                for extra in [0, SCAN_LIMIT + 8] {
                    let r = padded(sample, extra);
                    assert_eq!(e.evaluate(&r).expect("evaluates"), e.evaluate_general(&r).expect("evaluates"), "{src} on {r}");
                }
            }
        }
    }

    #[test]
    fn the_root_test_is_the_type_test() {
        let values = [
            json!({"resourceType": "Patient"}),
            json!({"resourceType": "Bundle"}),
            json!({"resourceType": "Parameters"}),
            json!({"resourceType": 3}),
            json!({"id": "x"}),
            json!("text"),
            json!(true),
            json!(1.5),
            json!(null),
        ];
        for root in
            ["Patient", "patient", "FHIR.Patient", "Resource", "DomainResource", "Bundle", "Parameters", "String", "Boolean", "Element"]
        {
            let path = SimplePath { root: root.to_string(), steps: Vec::new() };
            for value in &values {
                assert_eq!(path.root_matches(value), is_of_type(None, value, root), "{root} on {value}");
            }
        }
    }

    #[test]
    fn lookups_find_what_get_finds() {
        for extra in [0, 3, SCAN_LIMIT, SCAN_LIMIT + 1, 2 * SCAN_LIMIT] {
            let r = padded(&json!({"a": 1, "_a": 2, "ab": 3, "b": null}), extra);
            let Value::Object(o) = &r else { unreachable!() };
            let names = ["a", "_a", "b", "c", "ab", "pad0", "pad31"];
            assert_eq!(lookup(o, names), names.map(|name| o.get(name)), "{extra}");
            assert_eq!(underscored(o, "a"), o.get("_a"));
            assert_eq!(underscored(o, "ab"), None);
        }
    }
}
