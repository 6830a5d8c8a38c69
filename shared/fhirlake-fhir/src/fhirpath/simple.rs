//! The fast path: "compiled" simple paths (`Type.a.b`, `Type.value as Quantity` on a choice element, `A.x | B.y`) walked directly over the JSON.
//!
//! Most R4 search-parameter expressions are of this shape. The walk gives the same answer as the general evaluator
//! (the tests check both on every sample) without building the evaluator's collections.

use serde_json::Value;

use super::ast::{BinOp, Expr};
use super::types::{choice_key, choice_suffix, is_of_type};

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
    Choice { name: String, key: String, ty: String },
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
            let name = member.name.clone();
            p.steps.pop();
            p.steps.push(Step::Choice { name, key, ty: ty.to_string() });
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
    fn walk<'a>(&self, resource: &'a Value) -> Vec<&'a Value> {
        let root = Node { value: Some(resource), ext: None, ty: None };
        if !is_of_type(None, resource, &self.root) {
            return Vec::new();
        }
        let mut cur = vec![root];
        for step in &self.steps {
            let mut next = Vec::with_capacity(cur.len());
            for n in &cur {
                // A primitive's id and extensions live in its `_name` sibling.
                let Some(Value::Object(o)) = n.value.filter(|v| v.is_object()).or(n.ext) else { continue };
                match step {
                    Step::Member(Member { name, sibling }) => {
                        if o.contains_key(name) || o.contains_key(sibling) {
                            push_member(&mut next, o, name, sibling, None);
                        } else {
                            for key in o.keys() {
                                if let Some(t) = choice_suffix(key, name) {
                                    push(&mut next, o, key, Some(t));
                                }
                            }
                        }
                    }
                    Step::Choice { name, key, ty } => {
                        if o.contains_key(name) {
                            let mut tmp = Vec::new();
                            push(&mut tmp, o, name, None);
                            next.extend(tmp.into_iter().filter(|n| n.value.is_some_and(|v| is_of_type(n.ty, v, ty))));
                        } else {
                            push(&mut next, o, key, choice_suffix(key, name));
                        }
                    }
                }
            }
            cur = next;
        }
        cur.into_iter().filter_map(|n| n.value.filter(|v| !v.is_null())).collect()
    }
}

fn push<'a>(out: &mut Vec<Node<'a>>, o: &'a serde_json::Map<String, Value>, key: &str, ty: Option<&'static str>) {
    push_member(out, o, key, &format!("_{key}"), ty);
}

/// The nodes of member `key` of `o` (each item of an array), with their `sibling` (`_key`) parts.
fn push_member<'a>(out: &mut Vec<Node<'a>>, o: &'a serde_json::Map<String, Value>, key: &str, sibling: &str, ty: Option<&'static str>) {
    let ext = o.get(sibling);
    match (o.get(key), ext) {
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
