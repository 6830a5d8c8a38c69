//! The tree-walking evaluator: FHIRPath over borrowed `serde_json::Value`s, optionally tracking where each result lives.

use std::rc::Rc;

use serde_json::{json, Number, Value};

use super::ast::{BinOp, Expr, Literal};
use super::temporal::{self, Kind, Temporal};
use super::types::{choice_suffix, type_matches, Namespace};
use super::FhirPathError;
use crate::registry::{self, ElementDef};

static NULL: Value = Value::Null;

/// Where an element lives in the resource: a chain of object keys and array indexes from the root.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Loc {
    Root,
    Key(Rc<Loc>, String),
    Index(Rc<Loc>, usize),
}

impl Loc {
    /// The segments from the root, outermost first.
    pub(crate) fn segments(&self) -> Vec<Segment> {
        let mut out = Vec::new();
        let mut cur = self;
        loop {
            match cur {
                Loc::Root => break,
                Loc::Key(p, k) => {
                    out.push(Segment::Key(k.clone()));
                    cur = p;
                }
                Loc::Index(p, i) => {
                    out.push(Segment::Index(*i));
                    cur = p;
                }
            }
        }
        out.reverse();
        out
    }

    /// The location of a primitive's `_name` sibling (extensions and id of a primitive).
    fn ext_sibling(self: &Rc<Self>) -> Option<Rc<Loc>> {
        match &**self {
            Loc::Key(p, k) => Some(Rc::new(Loc::Key(p.clone(), format!("_{k}")))),
            Loc::Index(p, i) => match &**p {
                Loc::Key(pp, k) => Some(Rc::new(Loc::Index(Rc::new(Loc::Key(pp.clone(), format!("_{k}"))), *i))),
                _ => None,
            },
            Loc::Root => None,
        }
    }
}

/// One step of a [`Location`](super::Location).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// An object member.
    Key(String),
    /// An array element.
    Index(usize),
}

/// A value in a FHIRPath collection.
#[derive(Debug, Clone)]
pub(crate) struct Item<'a> {
    val: Val<'a>,
    /// The `_name` sibling object of a primitive (its id and extensions), if any.
    ext: Option<&'a Value>,
    /// The FHIR type when known (choice-element suffix, resolved reference).
    ty: Option<&'static str>,
    /// A resource type known from a resolved reference.
    ref_type: Option<Rc<str>>,
    /// Where the element lives; `None` for computed values or when not tracking.
    pub(crate) loc: Option<Rc<Loc>>,
    /// The element definitions of this node's children, when the model knows them.
    elems: Option<&'static [ElementDef]>,
}

#[derive(Debug, Clone)]
enum Val<'a> {
    Ref(&'a Value),
    Own(Value),
}

impl<'a> Item<'a> {
    fn own(v: Value) -> Self {
        Item { val: Val::Own(v), ext: None, ty: None, ref_type: None, loc: None, elems: None }
    }
    fn node(v: &'a Value, loc: Option<Rc<Loc>>) -> Self {
        Item { val: Val::Ref(v), ext: None, ty: None, ref_type: None, loc, elems: resource_elems(v) }
    }
    pub(crate) fn value(&self) -> &Value {
        match &self.val {
            Val::Ref(v) => v,
            Val::Own(v) => v,
        }
    }
    /// The item's type and its namespace: model elements are FHIR types, literals and computed values System ones.
    fn type_of(&self) -> Option<(Namespace, &str)> {
        if let Some(t) = self.ref_type.as_deref() {
            return Some((Namespace::Fhir, t));
        }
        let v = self.value();
        if let Some(rt) = v.get("resourceType").and_then(Value::as_str) {
            return Some((Namespace::Fhir, rt));
        }
        match &self.val {
            Val::Own(v) => Some((
                Namespace::System,
                match (self.ty, v) {
                    (Some(t), _) => t,
                    (None, Value::Bool(_)) => "Boolean",
                    (None, Value::Number(n)) if n.is_i64() || n.is_u64() => "Integer",
                    (None, Value::Number(_)) => "Decimal",
                    (None, Value::String(_)) => "String",
                    (None, Value::Object(o)) if o.contains_key("value") => "Quantity",
                    _ => return None,
                },
            )),
            Val::Ref(v) => Some((
                Namespace::Fhir,
                match (self.ty, v) {
                    (Some(t), _) => t,
                    (None, Value::Bool(_)) => "boolean",
                    (None, Value::Number(n)) if n.is_i64() || n.is_u64() => "integer",
                    (None, Value::Number(_)) => "decimal",
                    (None, Value::String(_)) => "string",
                    _ => return None,
                },
            )),
        }
    }
    /// The JSON to hand out: `None` for a primitive that has only extensions.
    pub(crate) fn into_json(self) -> Option<Value> {
        match self.val {
            Val::Ref(Value::Null) | Val::Own(Value::Null) => None,
            Val::Ref(v) => Some(v.clone()),
            Val::Own(v) => Some(v),
        }
    }
}

type Coll<'a> = Vec<Item<'a>>;

/// Per-invocation variables.
#[derive(Clone, Default)]
struct Env<'a> {
    this: Option<Item<'a>>,
    index: Option<usize>,
    total: Option<Item<'a>>,
}

/// Evaluation over one root resource.
pub(crate) struct Evaluator<'a> {
    root: &'a Value,
    track: bool,
    /// Bounds work on hostile input (`repeat`, `descendants`, huge unions).
    budget: std::cell::Cell<usize>,
}

const MAX_STEPS: usize = 5_000_000;
const MAX_DEPTH: usize = 256;

impl<'a> Evaluator<'a> {
    pub(crate) fn new(root: &'a Value, track: bool) -> Self {
        Evaluator { root, track, budget: std::cell::Cell::new(MAX_STEPS) }
    }

    /// Evaluates `expr` with the root resource as the focus.
    pub(crate) fn run(&self, expr: &Expr) -> Result<Coll<'a>, FhirPathError> {
        let root = Item::node(self.root, self.track.then(|| Rc::new(Loc::Root)));
        let env = Env { this: Some(root.clone()), ..Env::default() };
        self.eval(expr, &[root], &env, 0)
    }

    fn tick(&self, n: usize) -> Result<(), FhirPathError> {
        let left = self.budget.get();
        if n > left {
            return Err(FhirPathError::eval("evaluation exceeded its work limit"));
        }
        self.budget.set(left - n);
        Ok(())
    }

    fn eval(&self, e: &Expr, focus: &[Item<'a>], env: &Env<'a>, depth: usize) -> Result<Coll<'a>, FhirPathError> {
        if depth > MAX_DEPTH {
            return Err(FhirPathError::eval("expression nested too deeply"));
        }
        self.tick(1 + focus.len())?;
        let d = depth + 1;
        match e {
            Expr::Literal(l) => Ok(literal(l)?.into_iter().collect()),
            Expr::Identifier(name) => Ok(self.navigate_start(focus, name)),
            Expr::Special(s) => Ok(match s.as_str() {
                "this" => env.this.clone().into_iter().collect(),
                "index" => env.index.map(|i| Item::own(json!(i))).into_iter().collect(),
                _ => env.total.clone().into_iter().collect(),
            }),
            Expr::Env(name) => self.env_var(name),
            Expr::Member(base, name) => {
                let b = self.eval(base, focus, env, d)?;
                Ok(self.navigate(&b, name))
            }
            Expr::Index(base, idx) => {
                let b = self.eval(base, focus, env, d)?;
                let i = self.eval(idx, focus, env, d)?;
                let i = singleton_int(&i)?.ok_or_else(|| FhirPathError::eval("index must be an integer"))?;
                Ok(usize::try_from(i).ok().and_then(|i| b.into_iter().nth(i)).into_iter().collect())
            }
            Expr::Negate(inner) => {
                let v = self.eval(inner, focus, env, d)?;
                match single(&v)? {
                    None => Ok(vec![]),
                    Some(it) => match it.value() {
                        Value::Number(n) => Ok(vec![Item::own(negate(n))]),
                        Value::Object(o) if o.contains_key("value") => {
                            let mut q = it.value().clone();
                            if let Some(Value::Number(n)) = o.get("value") {
                                q["value"] = negate(n);
                            }
                            Ok(vec![Item::own(q)])
                        }
                        _ => Err(FhirPathError::eval("unary minus needs a number")),
                    },
                }
            }
            Expr::Is(base, ty) => {
                let b = self.eval(base, focus, env, d)?;
                match single(&b)? {
                    None => Ok(vec![]),
                    Some(it) => Ok(vec![boolean(self.item_is(it, ty, true)?)]),
                }
            }
            Expr::As(base, ty) => {
                let b = self.eval(base, focus, env, d)?;
                self.filter_type(b, ty)
            }
            Expr::Binary(op, l, r) => self.binary(*op, l, r, focus, env, d),
            Expr::Call(base, name, args) => {
                let input = match base {
                    Some(b) => self.eval(b, focus, env, d)?,
                    None => focus.to_vec(),
                };
                self.call(name, input, args, env, d)
            }
        }
    }

    fn env_var(&self, name: &str) -> Result<Coll<'a>, FhirPathError> {
        match name {
            "resource" | "context" | "rootResource" => Ok(vec![Item::node(self.root, self.track.then(|| Rc::new(Loc::Root)))]),
            "ucum" => Ok(vec![Item::own(json!("http://unitsofmeasure.org"))]),
            _ if name.starts_with("vs-") => Ok(vec![Item::own(json!(format!("http://hl7.org/fhir/ValueSet/{}", &name[3..])))]),
            _ if name.starts_with("ext-") => Ok(vec![Item::own(json!(format!("http://hl7.org/fhir/StructureDefinition/{}", &name[4..])))]),
            "sct" => Ok(vec![Item::own(json!("http://snomed.info/sct"))]),
            "loinc" => Ok(vec![Item::own(json!("http://loinc.org"))]),
            _ => Err(FhirPathError::eval("unknown environment variable")),
        }
    }

    fn item_is(&self, it: &Item<'a>, ty: &str, inherit: bool) -> Result<bool, FhirPathError> {
        type_matches(it.type_of(), ty, inherit)
    }

    /// The items of type `ty` (`as`, `ofType()`).
    fn filter_type(&self, input: Coll<'a>, ty: &str) -> Result<Coll<'a>, FhirPathError> {
        let mut out = Vec::with_capacity(input.len());
        for it in input {
            if self.item_is(&it, ty, false)? {
                out.push(it);
            }
        }
        Ok(out)
    }

    /// An identifier at the start of a path: a type name filters the focus, anything else is a member.
    fn navigate_start(&self, focus: &[Item<'a>], name: &str) -> Coll<'a> {
        if name.starts_with(|c: char| c.is_ascii_uppercase()) {
            let matching: Coll<'a> = focus.iter().filter(|it| self.item_is(it, name, true).unwrap_or(false)).cloned().collect();
            if !matching.is_empty() {
                return matching;
            }
        }
        self.navigate(focus, name)
    }

    /// Member navigation `focus.name`, flattening arrays, following choice types and `_name` primitive siblings.
    fn navigate(&self, focus: &[Item<'a>], name: &str) -> Coll<'a> {
        let mut out = Vec::new();
        for it in focus {
            let (obj, loc): (&'a Value, _) = match &it.val {
                Val::Ref(v @ Value::Object(_)) => (*v, it.loc.clone()),
                // A primitive's id and extensions live in its `_name` sibling.
                Val::Ref(_) => match it.ext {
                    Some(e) => (e, it.loc.as_ref().and_then(|l| l.ext_sibling())),
                    None => continue,
                },
                Val::Own(_) => {
                    // Computed objects (resolved references, quantities) can be navigated but not located.
                    if let Some(Value::Object(o)) = Some(it.value()) {
                        if let Some(v) = o.get(name) {
                            push_owned(&mut out, v);
                        }
                    }
                    continue;
                }
            };
            let Value::Object(o) = obj else { continue };
            if o.contains_key(name) || o.contains_key(&format!("_{name}")) {
                self.push_member(&mut out, o, name, &loc, None, it.elems);
            } else if name != "resourceType" && !o.contains_key(name) {
                for key in o.keys() {
                    if let Some(ty) = choice_suffix(key, name) {
                        self.push_member(&mut out, o, key, &loc, Some(ty), it.elems);
                    }
                }
            }
        }
        out
    }

    fn push_member(
        &self,
        out: &mut Coll<'a>,
        o: &'a serde_json::Map<String, Value>,
        key: &str,
        parent: &Option<Rc<Loc>>,
        ty: Option<&'static str>,
        parent_elems: Option<&'static [ElementDef]>,
    ) {
        let value = o.get(key);
        let ext = o.get(&format!("_{key}"));
        let (model_ty, elems) = member_model(parent_elems, key);
        let ty = model_ty.or(ty);
        let loc = |p: &Rc<Loc>| Rc::new(Loc::Key(p.clone(), key.to_string()));
        let base_loc = if self.track { parent.as_ref().map(loc) } else { None };
        match (value, ext) {
            (Some(Value::Array(items)), ext) => {
                let exts = ext.and_then(Value::as_array);
                for (i, v) in items.iter().enumerate() {
                    let e = exts.and_then(|a| a.get(i)).filter(|e| !e.is_null());
                    let l = base_loc.as_ref().map(|b| Rc::new(Loc::Index(b.clone(), i)));
                    out.push(Item { val: Val::Ref(v), ext: e, ty, ref_type: None, loc: l, elems: resource_elems(v).or(elems) });
                }
            }
            (None, Some(Value::Array(exts))) => {
                for (i, e) in exts.iter().enumerate() {
                    if !e.is_null() {
                        let l = base_loc.as_ref().map(|b| Rc::new(Loc::Index(b.clone(), i)));
                        out.push(Item { val: Val::Ref(&NULL), ext: Some(e), ty, ref_type: None, loc: l, elems });
                    }
                }
            }
            (Some(v), ext) => {
                out.push(Item { val: Val::Ref(v), ext, ty, ref_type: None, loc: base_loc, elems: resource_elems(v).or(elems) })
            }
            (None, Some(e)) => out.push(Item { val: Val::Ref(&NULL), ext: Some(e), ty, ref_type: None, loc: base_loc, elems }),
            (None, None) => {}
        }
    }

    fn binary(&self, op: BinOp, l: &Expr, r: &Expr, focus: &[Item<'a>], env: &Env<'a>, d: usize) -> Result<Coll<'a>, FhirPathError> {
        let lv = self.eval(l, focus, env, d)?;
        // Short-circuit the boolean operators where the left side decides.
        match op {
            BinOp::And if to_bool(&lv)? == Some(false) => return Ok(vec![boolean(false)]),
            BinOp::Or if to_bool(&lv)? == Some(true) => return Ok(vec![boolean(true)]),
            BinOp::Implies if to_bool(&lv)? == Some(false) => return Ok(vec![boolean(true)]),
            _ => {}
        }
        let rv = self.eval(r, focus, env, d)?;
        match op {
            BinOp::Union => {
                self.tick(lv.len() * rv.len())?;
                let mut out: Coll<'a> = Vec::with_capacity(lv.len() + rv.len());
                for it in lv.into_iter().chain(rv) {
                    if !out.iter().any(|o| values_equal(o.value(), it.value()) == Some(true)) {
                        out.push(it);
                    }
                }
                Ok(out)
            }
            BinOp::And | BinOp::Or | BinOp::Xor | BinOp::Implies => {
                let (a, b) = (to_bool(&lv)?, to_bool(&rv)?);
                let res = match op {
                    BinOp::And => match (a, b) {
                        (Some(false), _) | (_, Some(false)) => Some(false),
                        (Some(true), Some(true)) => Some(true),
                        _ => None,
                    },
                    BinOp::Or => match (a, b) {
                        (Some(true), _) | (_, Some(true)) => Some(true),
                        (Some(false), Some(false)) => Some(false),
                        _ => None,
                    },
                    BinOp::Xor => a.zip(b).map(|(a, b)| a != b),
                    _ => match (a, b) {
                        (Some(true), b) => b,
                        (None, Some(true)) => Some(true),
                        _ => None,
                    },
                };
                Ok(res.map(boolean).into_iter().collect())
            }
            BinOp::Eq | BinOp::Ne | BinOp::Equiv | BinOp::NotEquiv => {
                let equiv = matches!(op, BinOp::Equiv | BinOp::NotEquiv);
                let negate = matches!(op, BinOp::Ne | BinOp::NotEquiv);
                if lv.is_empty() || rv.is_empty() {
                    return Ok(if equiv { vec![boolean(negate ^ (lv.is_empty() && rv.is_empty()))] } else { vec![] });
                }
                if lv.len() != rv.len() {
                    return Ok(vec![boolean(negate)]);
                }
                if equiv {
                    // Equivalence ignores order: every item must have an equivalent partner.
                    let mut used = vec![false; rv.len()];
                    let mut all = true;
                    for a in &lv {
                        match rv.iter().enumerate().position(|(i, b)| !used[i] && values_equivalent(a.value(), b.value())) {
                            Some(i) => used[i] = true,
                            None => {
                                all = false;
                                break;
                            }
                        }
                    }
                    return Ok(vec![boolean(all ^ negate)]);
                }
                let mut all = Some(true);
                for (a, b) in lv.iter().zip(&rv) {
                    let eq = if equiv { Some(values_equivalent(a.value(), b.value())) } else { values_equal(a.value(), b.value()) };
                    match eq {
                        Some(true) => {}
                        Some(false) => {
                            all = Some(false);
                            break;
                        }
                        None => all = None,
                    }
                }
                Ok(all.map(|b| boolean(b ^ negate)).into_iter().collect())
            }
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let (Some(a), Some(b)) = (single(&lv)?, single(&rv)?) else { return Ok(vec![]) };
                let ord = compare(a.value(), b.value())?;
                Ok(ord
                    .map(|o| {
                        boolean(match op {
                            BinOp::Lt => o.is_lt(),
                            BinOp::Le => o.is_le(),
                            BinOp::Gt => o.is_gt(),
                            _ => o.is_ge(),
                        })
                    })
                    .into_iter()
                    .collect())
            }
            BinOp::In | BinOp::Contains => {
                let (needle, hay) = if op == BinOp::In { (&lv, &rv) } else { (&rv, &lv) };
                let Some(n) = single(needle)? else { return Ok(vec![]) };
                Ok(vec![boolean(hay.iter().any(|h| values_equal(h.value(), n.value()) == Some(true)))])
            }
            BinOp::Concat => {
                let s = |c: &Coll<'a>| -> Result<String, FhirPathError> {
                    Ok(single(c)?.and_then(|i| to_string_value(i.value())).unwrap_or_default())
                };
                Ok(vec![Item::own(Value::String(s(&lv)? + &s(&rv)?))])
            }
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::IntDiv | BinOp::Mod => {
                let (Some(a), Some(b)) = (single(&lv)?, single(&rv)?) else { return Ok(vec![]) };
                arithmetic(op, a.value(), b.value()).map(|v| v.map(Item::own).into_iter().collect())
            }
        }
    }

    /// Evaluates `arg` once per input element with that element as `$this`.
    fn per_item(&self, arg: &Expr, it: &Item<'a>, index: usize, env: &Env<'a>, d: usize) -> Result<Coll<'a>, FhirPathError> {
        let env = Env { this: Some(it.clone()), index: Some(index), total: env.total.clone() };
        self.eval(arg, std::slice::from_ref(it), &env, d)
    }

    /// Evaluates an argument that does not depend on the element (`skip(2)`, `startsWith('x')`), against `$this`.
    fn arg_value(&self, arg: &Expr, env: &Env<'a>, d: usize) -> Result<Coll<'a>, FhirPathError> {
        let focus: Coll<'a> = env.this.clone().into_iter().collect();
        self.eval(arg, &focus, env, d)
    }

    fn call(&self, name: &str, input: Coll<'a>, args: &[Expr], env: &Env<'a>, d: usize) -> Result<Coll<'a>, FhirPathError> {
        let arity = |n: std::ops::RangeInclusive<usize>| -> Result<(), FhirPathError> {
            if n.contains(&args.len()) {
                Ok(())
            } else {
                Err(FhirPathError::eval(format!("wrong number of arguments to {name}()")))
            }
        };
        match name {
            "empty" => {
                arity(0..=0)?;
                Ok(vec![boolean(input.is_empty())])
            }
            "exists" => {
                arity(0..=1)?;
                let found = match args.first() {
                    None => !input.is_empty(),
                    Some(a) => {
                        let mut found = false;
                        for (i, it) in input.iter().enumerate() {
                            if to_bool(&self.per_item(a, it, i, env, d)?)? == Some(true) {
                                found = true;
                                break;
                            }
                        }
                        found
                    }
                };
                Ok(vec![boolean(found)])
            }
            "all" => {
                arity(1..=1)?;
                for (i, it) in input.iter().enumerate() {
                    if to_bool(&self.per_item(&args[0], it, i, env, d)?)? != Some(true) {
                        return Ok(vec![boolean(false)]);
                    }
                }
                Ok(vec![boolean(true)])
            }
            "where" => {
                arity(1..=1)?;
                let mut out = Vec::new();
                for (i, it) in input.into_iter().enumerate() {
                    if to_bool(&self.per_item(&args[0], &it, i, env, d)?)? == Some(true) {
                        out.push(it);
                    }
                }
                Ok(out)
            }
            "select" => {
                arity(1..=1)?;
                let mut out = Vec::new();
                for (i, it) in input.iter().enumerate() {
                    out.extend(self.per_item(&args[0], it, i, env, d)?);
                }
                Ok(out)
            }
            "repeat" => {
                arity(1..=1)?;
                let mut out: Coll<'a> = Vec::new();
                let mut frontier = input;
                while !frontier.is_empty() {
                    let mut next = Vec::new();
                    for (i, it) in frontier.iter().enumerate() {
                        for r in self.per_item(&args[0], it, i, env, d)? {
                            self.tick(out.len())?;
                            if !out.iter().any(|o| values_equal(o.value(), r.value()) == Some(true)) {
                                out.push(r.clone());
                                next.push(r);
                            }
                        }
                    }
                    frontier = next;
                }
                Ok(out)
            }
            "sort" => {
                // Each argument is a sort key; a leading unary minus sorts that key descending.
                let mut keyed = Vec::with_capacity(input.len());
                for (i, it) in input.into_iter().enumerate() {
                    let mut keys = Vec::with_capacity(args.len().max(1));
                    if args.is_empty() {
                        keys.push((false, Some(it.value().clone())));
                    }
                    for a in args {
                        let (desc, e) = match a {
                            Expr::Negate(inner) => (true, &**inner),
                            other => (false, other),
                        };
                        let k = self.per_item(e, &it, i, env, d)?;
                        keys.push((desc, single(&k)?.map(|k| k.value().clone())));
                    }
                    keyed.push((keys, it));
                }
                self.tick(keyed.len() * keyed.len().max(1).ilog2().max(1) as usize)?;
                let mut failed = None;
                keyed.sort_by(|(a, _), (b, _)| {
                    for ((desc, x), (_, y)) in a.iter().zip(b) {
                        // Empty keys sort first in either direction.
                        let o = match (x, y) {
                            (None, None) => std::cmp::Ordering::Equal,
                            (None, Some(_)) => std::cmp::Ordering::Less,
                            (Some(_), None) => std::cmp::Ordering::Greater,
                            (Some(x), Some(y)) => match compare(x, y) {
                                Ok(o) => {
                                    let o = o.unwrap_or(std::cmp::Ordering::Equal);
                                    if *desc {
                                        o.reverse()
                                    } else {
                                        o
                                    }
                                }
                                Err(e) => {
                                    failed = Some(e);
                                    std::cmp::Ordering::Equal
                                }
                            },
                        };
                        if o.is_ne() {
                            return o;
                        }
                    }
                    std::cmp::Ordering::Equal
                });
                if let Some(e) = failed {
                    return Err(e);
                }
                Ok(keyed.into_iter().map(|(_, it)| it).collect())
            }
            "conformsTo" => {
                arity(1..=1)?;
                let url = singleton_str(&self.arg_value(&args[0], env, d)?)?
                    .ok_or_else(|| FhirPathError::eval("conformsTo() needs a profile url"))?;
                // Only the base resource profiles are known: a resource conforms to its own type's definition.
                let ty = url
                    .strip_prefix("http://hl7.org/fhir/StructureDefinition/")
                    .filter(|t| registry::type_def(t).is_some())
                    .ok_or_else(|| FhirPathError::eval("conformsTo() only knows the base FHIR profiles"))?;
                let Some(it) = single(&input)? else { return Ok(vec![]) };
                Ok(vec![boolean(self.item_is(it, ty, true)?)])
            }
            "precision" => {
                arity(0..=0)?;
                let Some(it) = single(&input)? else { return Ok(vec![]) };
                let digits = match it.value() {
                    Value::String(s) if it.ty.is_some() || looks_temporal(s) => Temporal::parse(s).map(|t| t.digits()),
                    // Decimal places as the number is held (trailing zeros of the source are not kept).
                    Value::Number(n) => Some(n.to_string().split_once('.').map(|(_, f)| f.len()).unwrap_or(0)),
                    _ => None,
                };
                Ok(digits.map(|d| Item::own(json!(d))).into_iter().collect())
            }
            "aggregate" => {
                arity(1..=2)?;
                let mut total = match args.get(1) {
                    Some(init) => single(&self.arg_value(init, env, d)?)?.cloned(),
                    None => None,
                };
                for (i, it) in input.iter().enumerate() {
                    let env = Env { this: Some(it.clone()), index: Some(i), total: total.clone() };
                    total = single(&self.eval(&args[0], std::slice::from_ref(it), &env, d)?)?.cloned();
                }
                Ok(total.into_iter().collect())
            }
            "iif" => {
                arity(2..=3)?;
                // On a single input the criterion and results see it as `$this`.
                let env = match single(&input)? {
                    Some(it) => Env { this: Some(it.clone()), index: env.index, total: env.total.clone() },
                    None => env.clone(),
                };
                let cond = self.arg_value(&args[0], &env, d)?;
                let cond = match single(&cond)? {
                    None => None,
                    Some(c) => Some(c.value().as_bool().ok_or_else(|| FhirPathError::eval("iif() criterion must be a boolean"))?),
                };
                if cond == Some(true) {
                    self.arg_value(&args[1], &env, d)
                } else if let Some(e) = args.get(2) {
                    self.arg_value(e, &env, d)
                } else {
                    Ok(vec![])
                }
            }
            "not" => {
                arity(0..=0)?;
                Ok(to_bool(&input)?.map(|b| boolean(!b)).into_iter().collect())
            }
            "count" => {
                arity(0..=0)?;
                Ok(vec![Item::own(json!(input.len()))])
            }
            "first" => {
                arity(0..=0)?;
                Ok(input.into_iter().take(1).collect())
            }
            "last" => {
                arity(0..=0)?;
                Ok(input.into_iter().last().into_iter().collect())
            }
            "tail" => {
                arity(0..=0)?;
                Ok(input.into_iter().skip(1).collect())
            }
            "skip" | "take" => {
                arity(1..=1)?;
                let n = singleton_int(&self.arg_value(&args[0], env, d)?)?
                    .ok_or_else(|| FhirPathError::eval(format!("{name}() needs an integer")))?;
                let n = usize::try_from(n.max(0)).unwrap_or(0);
                Ok(if name == "skip" { input.into_iter().skip(n).collect() } else { input.into_iter().take(n).collect() })
            }
            "single" => {
                arity(0..=0)?;
                Ok(single(&input)?.cloned().into_iter().collect())
            }
            "distinct" | "isDistinct" => {
                arity(0..=0)?;
                self.tick(input.len() * input.len())?;
                let mut out: Coll<'a> = Vec::new();
                let len = input.len();
                for it in input {
                    if !out.iter().any(|o| values_equal(o.value(), it.value()) == Some(true)) {
                        out.push(it);
                    }
                }
                Ok(if name == "distinct" { out } else { vec![boolean(out.len() == len)] })
            }
            "union" | "combine" | "intersect" | "exclude" | "subsetOf" | "supersetOf" => {
                arity(1..=1)?;
                let other = self.arg_value(&args[0], env, d)?;
                self.tick(input.len() * other.len())?;
                let has = |c: &Coll<'a>, v: &Value| c.iter().any(|o| values_equal(o.value(), v) == Some(true));
                Ok(match name {
                    "combine" => input.into_iter().chain(other).collect(),
                    "union" => {
                        let mut out: Coll<'a> = Vec::new();
                        for it in input.into_iter().chain(other) {
                            if !has(&out, it.value()) {
                                out.push(it);
                            }
                        }
                        out
                    }
                    "intersect" => {
                        let mut out: Coll<'a> = Vec::new();
                        for it in input {
                            if has(&other, it.value()) && !has(&out, it.value()) {
                                out.push(it);
                            }
                        }
                        out
                    }
                    "exclude" => input.into_iter().filter(|it| !has(&other, it.value())).collect(),
                    "subsetOf" => vec![boolean(input.iter().all(|it| has(&other, it.value())))],
                    _ => vec![boolean(other.iter().all(|it| has(&input, it.value())))],
                })
            }
            "allTrue" | "anyTrue" | "allFalse" | "anyFalse" => {
                arity(0..=0)?;
                let want = name.ends_with("True");
                if input.iter().any(|it| !it.value().is_boolean()) {
                    return Err(FhirPathError::eval(format!("{name}() needs booleans")));
                }
                let hits = |it: &Item<'a>| it.value().as_bool() == Some(want);
                Ok(vec![boolean(if name.starts_with("all") { input.iter().all(hits) } else { input.iter().any(hits) })])
            }
            "ofType" | "as" | "is" => {
                arity(1..=1)?;
                let ty = type_arg(&args[0])?;
                if name == "is" {
                    return Ok(match single(&input)? {
                        Some(it) => vec![boolean(self.item_is(it, &ty, true)?)],
                        None => vec![],
                    });
                }
                self.filter_type(input, &ty)
            }
            "hasValue" => {
                arity(0..=0)?;
                Ok(vec![boolean(input.len() == 1 && matches!(input[0].value(), Value::String(_) | Value::Number(_) | Value::Bool(_)))])
            }
            "getValue" => {
                arity(0..=0)?;
                Ok(input.into_iter().filter(|it| matches!(it.value(), Value::String(_) | Value::Number(_) | Value::Bool(_))).collect())
            }
            "extension" | "hasExtension" => {
                arity(1..=1)?;
                let url =
                    singleton_str(&self.arg_value(&args[0], env, d)?)?.ok_or_else(|| FhirPathError::eval("extension() needs a url"))?;
                let exts = self.navigate(&input, "extension");
                let found: Coll<'a> =
                    exts.into_iter().filter(|e| e.value().get("url").and_then(Value::as_str) == Some(url.as_str())).collect();
                Ok(if name == "extension" { found } else { vec![boolean(!found.is_empty())] })
            }
            "children" => {
                arity(0..=0)?;
                Ok(self.children(&input))
            }
            "descendants" => {
                arity(0..=0)?;
                let mut out = Vec::new();
                let mut frontier = self.children(&input);
                while !frontier.is_empty() {
                    self.tick(frontier.len())?;
                    let next = self.children(&frontier);
                    out.extend(frontier);
                    frontier = next;
                }
                Ok(out)
            }
            "resolve" => {
                arity(0..=0)?;
                Ok(input.iter().filter_map(|it| self.resolve(it)).collect())
            }
            "trace" => {
                arity(1..=2)?;
                Ok(input)
            }
            "toString" => {
                arity(0..=0)?;
                Ok(single(&input)?.and_then(|i| to_string_value(i.value())).map(|s| Item::own(Value::String(s))).into_iter().collect())
            }
            "toInteger" | "toDecimal" | "toBoolean" | "convertsToInteger" | "convertsToDecimal" | "convertsToBoolean"
            | "convertsToString" => {
                arity(0..=0)?;
                let Some(it) = single(&input)? else { return Ok(vec![]) };
                let converted = convert(name.trim_start_matches("convertsTo").trim_start_matches("to"), it.value());
                Ok(if name.starts_with("convertsTo") {
                    vec![boolean(converted.is_some())]
                } else {
                    converted.map(Item::own).into_iter().collect()
                })
            }
            "toDate" | "toDateTime" | "toTime" | "convertsToDate" | "convertsToDateTime" | "convertsToTime" => {
                arity(0..=0)?;
                let Some(it) = single(&input)? else { return Ok(vec![]) };
                let (kind, ty) = match name.trim_start_matches("convertsTo").trim_start_matches("to") {
                    "Date" => (Kind::Date, "Date"),
                    "DateTime" => (Kind::DateTime, "DateTime"),
                    _ => (Kind::Time, "Time"),
                };
                let converted = it.value().as_str().and_then(|s| temporal::convert(s, kind));
                if name.starts_with("convertsTo") {
                    return Ok(vec![boolean(converted.is_some())]);
                }
                Ok(converted
                    .map(|t| {
                        let mut item = Item::own(Value::String(t.format()));
                        item.ty = Some(ty);
                        item
                    })
                    .into_iter()
                    .collect())
            }
            "toQuantity" | "convertsToQuantity" => {
                arity(0..=1)?;
                let Some(it) = single(&input)? else { return Ok(vec![]) };
                let converted = to_quantity(it.value());
                if name == "convertsToQuantity" {
                    return Ok(vec![boolean(converted.is_some())]);
                }
                Ok(converted
                    .map(|q| {
                        let mut item = Item::own(q);
                        item.ty = Some("Quantity");
                        item
                    })
                    .into_iter()
                    .collect())
            }
            "type" => {
                arity(0..=0)?;
                Ok(input
                    .iter()
                    .filter_map(|it| it.type_of())
                    .map(|(ns, n)| {
                        let ns = if ns == Namespace::Fhir { "FHIR" } else { "System" };
                        Item::own(json!({"namespace": ns, "name": n}))
                    })
                    .collect())
            }
            "now" | "today" | "timeOfDay" => {
                arity(0..=0)?;
                let now = chrono::Utc::now();
                let s = match name {
                    "now" => now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "today" => now.format("%Y-%m-%d").to_string(),
                    _ => now.format("%H:%M:%S").to_string(),
                };
                Ok(vec![Item::own(Value::String(s))])
            }
            "abs" | "ceiling" | "floor" | "round" | "truncate" | "sqrt" | "exp" | "ln" | "log" | "power" => {
                let Some(it) = single(&input)? else { return Ok(vec![]) };
                if let (Some(q), "abs") = (it.value().as_object(), name) {
                    let mut q = q.clone();
                    if let Some(v) = q.get("value").and_then(Value::as_f64) {
                        q.insert("value".into(), number(v.abs()).unwrap_or(Value::Null));
                    }
                    return Ok(vec![Item::own(Value::Object(q))]);
                }
                let arg = match args.first() {
                    Some(a) if matches!(name, "log" | "power") => {
                        let v = self.arg_value(a, env, d)?;
                        match single(&v)? {
                            Some(v) => Some(v.value().as_f64().ok_or_else(|| FhirPathError::eval(format!("{name}() needs a number")))?),
                            None => return Ok(vec![]),
                        }
                    }
                    _ => None,
                };
                let x = it.value().as_f64().ok_or_else(|| FhirPathError::eval(format!("{name}() needs a number")))?;
                let r = match name {
                    "abs" => x.abs(),
                    "ceiling" => x.ceil(),
                    "floor" => x.floor(),
                    "truncate" => x.trunc(),
                    "sqrt" => x.sqrt(),
                    "exp" => x.exp(),
                    "ln" => x.ln(),
                    "log" => x.log(arg.unwrap_or(10.0)),
                    "power" => {
                        let p = arg.unwrap_or(1.0);
                        let r = x.powf(p);
                        // An integer to an integer power stays an integer.
                        if it.value().is_i64() && p.fract() == 0.0 && p >= 0.0 && r.abs() < 9.0e15 {
                            return Ok(vec![Item::own(json!(r as i64))]);
                        }
                        r
                    }
                    _ => {
                        let p = match args.first() {
                            Some(a) => singleton_int(&self.arg_value(a, env, d)?)?.unwrap_or(0).clamp(0, 15),
                            None => 0,
                        };
                        let f = 10f64.powi(p as i32);
                        (x * f).round() / f
                    }
                };
                if !r.is_finite() {
                    return Ok(vec![]);
                }
                Ok(number(round_decimal(r)).map(Item::own).into_iter().collect())
            }
            _ => self.string_fn(name, input, args, env, d),
        }
    }

    fn string_fn(&self, name: &str, input: Coll<'a>, args: &[Expr], env: &Env<'a>, d: usize) -> Result<Coll<'a>, FhirPathError> {
        let known = [
            "startsWith",
            "endsWith",
            "contains",
            "matches",
            "matchesFull",
            "encode",
            "decode",
            "escape",
            "unescape",
            "replaceMatches",
            "replace",
            "substring",
            "length",
            "lower",
            "upper",
            "indexOf",
            "split",
            "join",
            "trim",
            "toChars",
        ];
        if !known.contains(&name) {
            return Err(FhirPathError::eval(format!("unsupported function {name}()")));
        }
        let mut sargs = Vec::with_capacity(args.len());
        for a in args {
            sargs.push(self.arg_value(a, env, d)?);
        }
        let str_arg = |i: usize| -> Result<Option<String>, FhirPathError> {
            match sargs.get(i) {
                Some(c) => singleton_str(c),
                None => Err(FhirPathError::eval(format!("missing argument to {name}()"))),
            }
        };
        if name == "join" {
            let sep = if args.is_empty() { String::new() } else { str_arg(0)?.unwrap_or_default() };
            let parts: Vec<String> = input.iter().filter_map(|i| to_string_value(i.value())).collect();
            return Ok(vec![Item::own(Value::String(parts.join(&sep)))]);
        }
        let Some(it) = single(&input)? else { return Ok(vec![]) };
        let Some(s) = it.value().as_str() else {
            return Err(FhirPathError::eval(format!("{name}() needs a string")));
        };
        let out: Value = match name {
            "startsWith" | "endsWith" | "contains" => {
                let Some(a) = str_arg(0)? else { return Ok(vec![]) };
                json!(match name {
                    "startsWith" => s.starts_with(&a),
                    "endsWith" => s.ends_with(&a),
                    _ => s.contains(&a),
                })
            }
            "matches" => {
                let Some(a) = str_arg(0)? else { return Ok(vec![]) };
                json!(regex(&a)?.is_match(s))
            }
            "encode" | "decode" | "escape" | "unescape" => {
                let Some(format) = str_arg(0)? else { return Ok(vec![]) };
                self.tick(s.len() * 6)?;
                let converted = match name {
                    "encode" => super::codec::encode(s, &format),
                    "decode" => super::codec::decode(s, &format),
                    "escape" => super::codec::escape(s, &format),
                    _ => super::codec::unescape(s, &format),
                };
                match converted {
                    Some(v) => json!(v),
                    None => return Ok(vec![]),
                }
            }
            "matchesFull" => {
                let Some(a) = str_arg(0)? else { return Ok(vec![]) };
                json!(regex(&format!("^(?:{a})$"))?.is_match(s))
            }
            "replaceMatches" => {
                let (Some(a), Some(b)) = (str_arg(0)?, str_arg(1)?) else { return Ok(vec![]) };
                if a.is_empty() {
                    json!(s)
                } else {
                    json!(regex(&a)?.replace_all(s, b.as_str()).into_owned())
                }
            }
            "replace" => {
                let (Some(a), Some(b)) = (str_arg(0)?, str_arg(1)?) else { return Ok(vec![]) };
                self.tick(s.len() + b.len())?;
                self.tick(s.len().saturating_mul(b.len()))?;
                json!(s.replace(&a, &b))
            }
            "substring" => {
                let chars: Vec<char> = s.chars().collect();
                let start = singleton_int(sargs.first().map(Vec::as_slice).unwrap_or(&[]))?;
                let Some(start) = start.and_then(|v| usize::try_from(v).ok()).filter(|v| *v < chars.len()) else {
                    return Ok(vec![]);
                };
                let len = match sargs.get(1) {
                    Some(c) => singleton_int(c)?.map(|v| usize::try_from(v.max(0)).unwrap_or(0)),
                    None => None,
                };
                let end = len.map(|l| start.saturating_add(l).min(chars.len())).unwrap_or(chars.len());
                json!(chars[start..end].iter().collect::<String>())
            }
            "length" => json!(s.chars().count()),
            "lower" => json!(s.to_lowercase()),
            "upper" => json!(s.to_uppercase()),
            "trim" => json!(s.trim()),
            "indexOf" => {
                let Some(a) = str_arg(0)? else { return Ok(vec![]) };
                json!(s.find(&a).map(|b| s[..b].chars().count() as i64).unwrap_or(-1))
            }
            "split" => {
                let Some(a) = str_arg(0)? else { return Ok(vec![]) };
                return Ok(s.split(a.as_str()).map(|p| Item::own(json!(p))).collect());
            }
            _ => return Ok(s.chars().map(|c| Item::own(json!(c.to_string()))).collect()),
        };
        Ok(vec![Item::own(out)])
    }

    fn children(&self, input: &[Item<'a>]) -> Coll<'a> {
        let mut out = Vec::new();
        for it in input {
            if let Val::Ref(Value::Object(o)) = &it.val {
                for key in o.keys() {
                    if key != "resourceType" && !key.starts_with('_') {
                        self.push_member(&mut out, o, key, &it.loc, None, it.elems);
                    }
                }
            }
        }
        out
    }

    /// `resolve()`: contained resources for `#id`, otherwise a stub `{resourceType, id}` typed by the reference.
    fn resolve(&self, it: &Item<'a>) -> Option<Item<'a>> {
        let reference = match it.value() {
            Value::Object(o) => o.get("reference").and_then(Value::as_str)?,
            Value::String(s) => s.as_str(),
            _ => return None,
        };
        if let Some(id) = reference.strip_prefix('#') {
            let contained = self.root.get("contained")?.as_array()?;
            let (i, r) = contained.iter().enumerate().find(|(_, r)| r.get("id").and_then(Value::as_str) == Some(id))?;
            let loc = self.track.then(|| Rc::new(Loc::Index(Rc::new(Loc::Key(Rc::new(Loc::Root), "contained".into())), i)));
            return Some(Item::node(r, loc));
        }
        let (rtype, id) = reference_target(reference)?;
        let mut item = Item::own(json!({"resourceType": rtype, "id": id}));
        item.ref_type = Some(Rc::from(rtype));
        Some(item)
    }
}

/// The `Type/id` at the end of a relative or absolute literal reference, ignoring `/_history/n`.
pub(crate) fn reference_target(reference: &str) -> Option<(&str, &str)> {
    let path = reference.split(['?', '#']).next()?;
    let mut parts: Vec<&str> = path.split('/').collect();
    if parts.len() >= 4 && parts[parts.len() - 2] == "_history" {
        parts.truncate(parts.len() - 2);
    }
    let n = parts.len();
    if n < 2 {
        return None;
    }
    let (rtype, id) = (parts[n - 2], parts[n - 1]);
    let type_ok = rtype.starts_with(|c: char| c.is_ascii_uppercase()) && rtype.chars().all(|c| c.is_ascii_alphanumeric());
    (type_ok && !id.is_empty()).then_some((rtype, id))
}

/// The element definitions of a resource's children, for a JSON object that is a resource.
fn resource_elems(v: &Value) -> Option<&'static [ElementDef]> {
    let rt = v.get("resourceType")?.as_str()?;
    registry::type_def(rt).map(|t| t.elements)
}

/// The FHIR type of member `key` and the definitions of its children, from the parent's element definitions.
fn member_model(parent: Option<&'static [ElementDef]>, key: &str) -> (Option<&'static str>, Option<&'static [ElementDef]>) {
    let Some(m) = parent.and_then(|e| registry::find_element(e, key)) else { return (None, None) };
    if m.element.has_inline_children() {
        return (None, Some(m.element.children));
    }
    if let Some(cr) = m.element.content_reference {
        return (None, registry::element_by_path(cr.trim_start_matches('#')).map(|e| e.children));
    }
    match m.type_def {
        Some(t) => (Some(t.name), Some(t.elements)),
        None => (None, None),
    }
}

fn push_owned<'a>(out: &mut Coll<'a>, v: &Value) {
    match v {
        Value::Array(a) => out.extend(a.iter().map(|x| Item::own(x.clone()))),
        other => out.push(Item::own(other.clone())),
    }
}

fn type_arg(e: &Expr) -> Result<String, FhirPathError> {
    match e {
        Expr::Identifier(n) => Ok(n.clone()),
        Expr::Member(base, n) => match &**base {
            Expr::Identifier(ns) => Ok(format!("{ns}.{n}")),
            _ => Err(FhirPathError::eval("expected a type name")),
        },
        _ => Err(FhirPathError::eval("expected a type name")),
    }
}

fn literal(l: &Literal) -> Result<Option<Item<'static>>, FhirPathError> {
    let ty = match l {
        Literal::DateTime(s) => match Temporal::parse(s).map(|t| t.kind) {
            Some(Kind::Date) => Some("Date"),
            Some(Kind::DateTime) => Some("DateTime"),
            Some(Kind::Time) => Some("Time"),
            None => return Err(FhirPathError::eval("bad date/time literal")),
        },
        Literal::Quantity(..) => Some("Quantity"),
        _ => None,
    };
    let mut item = match literal_value(l)? {
        Some(v) => Item::own(v),
        None => return Ok(None),
    };
    item.ty = ty;
    Ok(Some(item))
}

fn literal_value(l: &Literal) -> Result<Option<Value>, FhirPathError> {
    Ok(Some(match l {
        Literal::Empty => return Ok(None),
        Literal::Bool(b) => json!(b),
        Literal::Str(s) => json!(s),
        Literal::Int(i) => json!(i),
        Literal::Dec(d) => Value::Number(d.parse::<Number>().map_err(|_| FhirPathError::eval("bad decimal literal"))?),
        Literal::DateTime(s) => json!(s.strip_prefix('T').unwrap_or(s)),
        Literal::Quantity(n, u) => {
            let n: Number = n.parse().map_err(|_| FhirPathError::eval("bad quantity literal"))?;
            json!({"value": n, "unit": u, "code": u})
        }
    }))
}

fn boolean<'a>(b: bool) -> Item<'a> {
    Item::own(Value::Bool(b))
}

fn negate(n: &Number) -> Value {
    if let Some(i) = n.as_i64() {
        json!(-i)
    } else {
        number(-n.as_f64().unwrap_or(0.0)).unwrap_or(Value::Null)
    }
}

fn number(f: f64) -> Option<Value> {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Some(json!(f as i64))
    } else {
        Number::from_f64(f).map(Value::Number)
    }
}

/// The single item of a collection, `None` when empty, an error when there are several.
fn single<'b, 'a>(c: &'b [Item<'a>]) -> Result<Option<&'b Item<'a>>, FhirPathError> {
    match c.len() {
        0 => Ok(None),
        1 => Ok(Some(&c[0])),
        _ => Err(FhirPathError::eval("expected a single value but found several")),
    }
}

fn singleton_int(c: &[Item<'_>]) -> Result<Option<i64>, FhirPathError> {
    Ok(single(c)?.and_then(|i| i.value().as_i64()))
}

fn singleton_str(c: &[Item<'_>]) -> Result<Option<String>, FhirPathError> {
    Ok(single(c)?.and_then(|i| i.value().as_str().map(str::to_string)))
}

/// Singleton evaluation of collections as a boolean.
pub(crate) fn to_bool(c: &[Item<'_>]) -> Result<Option<bool>, FhirPathError> {
    Ok(single(c)?.map(|it| it.value().as_bool().unwrap_or(true)))
}

fn to_string_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Object(o) if o.contains_key("value") && o.contains_key("unit") => {
            let unit = o["unit"].as_str().unwrap_or("");
            if super::ast::is_calendar_unit(unit) {
                Some(format!("{} {unit}", o["value"]))
            } else {
                Some(format!("{} '{unit}'", o["value"]))
            }
        }
        _ => None,
    }
}

fn convert(target: &str, v: &Value) -> Option<Value> {
    match target {
        "Integer" => match v {
            Value::Number(n) if n.is_i64() => Some(v.clone()),
            Value::String(s) => s.trim().parse::<i64>().ok().map(|i| json!(i)),
            Value::Bool(b) => Some(json!(i64::from(*b))),
            _ => None,
        },
        "Decimal" => match v {
            Value::Number(_) => Some(v.clone()),
            Value::String(s) => s.trim().parse::<f64>().ok().and_then(Number::from_f64).map(Value::Number),
            Value::Bool(b) => Some(json!(if *b { 1.0 } else { 0.0 })),
            _ => None,
        },
        "Boolean" => match v {
            Value::Bool(_) => Some(v.clone()),
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "t" | "yes" | "y" | "1" | "1.0" => Some(json!(true)),
                "false" | "f" | "no" | "n" | "0" | "0.0" => Some(json!(false)),
                _ => None,
            },
            Value::Number(n) => match n.as_f64() {
                Some(1.0) => Some(json!(true)),
                Some(0.0) => Some(json!(false)),
                _ => None,
            },
            _ => None,
        },
        _ => to_string_value(v).map(Value::String),
    }
}

/// A quantity's value and unit (its UCUM code, else its unit), when `v` is one.
fn quantity_parts(v: &Value) -> Option<(f64, &str)> {
    let o = v.as_object()?;
    if o.keys().any(|k| !matches!(k.as_str(), "value" | "unit" | "code" | "system" | "comparator")) {
        return None;
    }
    let value = o.get("value")?.as_f64()?;
    let unit = o.get("code").or_else(|| o.get("unit")).and_then(Value::as_str).unwrap_or("1");
    Some((value, unit))
}

/// A unit's dimension and its factor to that dimension's base unit; calendar durations from a week down are fixed.
fn unit_scale(unit: &str) -> Option<(&'static str, f64)> {
    Some(match unit {
        "ms" | "millisecond" | "milliseconds" => ("s", 0.001),
        "s" | "second" | "seconds" => ("s", 1.0),
        "min" | "minute" | "minutes" => ("s", 60.0),
        "h" | "hour" | "hours" => ("s", 3600.0),
        "d" | "day" | "days" => ("s", 86400.0),
        "wk" | "week" | "weeks" => ("s", 604_800.0),
        "year" | "years" => ("year", 1.0),
        "month" | "months" => ("month", 1.0),
        "mg" => ("g", 0.001),
        "g" => ("g", 1.0),
        "kg" => ("g", 1000.0),
        "mm" => ("m", 0.001),
        "cm" => ("m", 0.01),
        "m" => ("m", 1.0),
        "km" => ("m", 1000.0),
        _ => return None,
    })
}

/// Compares two quantities, converting between units of one dimension; `None` when the units are not comparable.
fn quantity_cmp(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    let ((x, u), (y, v)) = (quantity_parts(a)?, quantity_parts(b)?);
    if u == v {
        return x.partial_cmp(&y);
    }
    let ((du, fu), (dv, fv)) = (unit_scale(u)?, unit_scale(v)?);
    if du != dv {
        return None;
    }
    round_decimal(x * fu).partial_cmp(&round_decimal(y * fv))
}

/// Rounds away binary floating-point noise (`1.8 - 1.2`), keeping 14 significant digits.
fn round_decimal(x: f64) -> f64 {
    format!("{x:.13e}").parse().unwrap_or(x)
}

/// `toQuantity()`: numbers and booleans become unit `'1'`, strings `"1.5 'mg'"` or `"4 days"` their quantity.
fn to_quantity(v: &Value) -> Option<Value> {
    let q = |n: Value, unit: &str| json!({"value": n, "unit": unit, "code": unit});
    match v {
        Value::Number(_) => Some(q(v.clone(), "1")),
        Value::Bool(b) => Some(q(json!(if *b { 1.0 } else { 0.0 }), "1")),
        Value::Object(_) if quantity_parts(v).is_some() => Some(v.clone()),
        Value::String(s) => {
            let s = s.trim();
            let (num, unit) = match s.find(' ') {
                Some(i) => (&s[..i], s[i..].trim()),
                None => (s, "'1'"),
            };
            let valid_num = {
                let digits = num.strip_prefix(['+', '-']).unwrap_or(num);
                let (int, frac) = digits.split_once('.').unwrap_or((digits, "0"));
                !int.is_empty() && !frac.is_empty() && int.bytes().all(|b| b.is_ascii_digit()) && frac.bytes().all(|b| b.is_ascii_digit())
            };
            if !valid_num {
                return None;
            }
            let unit = match unit.strip_prefix('\'').and_then(|u| u.strip_suffix('\'')) {
                Some(u) => u,
                None if super::ast::is_calendar_unit(unit) => unit,
                None => return None,
            };
            let n: Number = num.trim_start_matches('+').parse().ok()?;
            Some(q(Value::Number(n), unit))
        }
        _ => None,
    }
}

fn regex(pattern: &str) -> Result<regex::Regex, FhirPathError> {
    regex::RegexBuilder::new(pattern)
        .dot_matches_new_line(true)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|_| FhirPathError::eval("invalid regular expression"))
}

/// FHIRPath `=`: `None` when the comparison is undefined (dates of different precision).
pub(crate) fn values_equal(a: &Value, b: &Value) -> Option<bool> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Some(x.as_f64() == y.as_f64()),
        (Value::String(x), Value::String(y)) => match temporal_pair(x, y) {
            Some((p, q)) => {
                if p.kind != q.kind && !(p.kind != Kind::Time && q.kind != Kind::Time) {
                    return Some(false);
                }
                p.compare(&q).map(|o| o.is_eq())
            }
            None => Some(x == y),
        },
        (Value::Array(x), Value::Array(y)) => Some(x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(a, b) == Some(true))),
        (Value::Object(_), Value::Object(_)) if quantity_parts(a).is_some() && quantity_parts(b).is_some() => match quantity_cmp(a, b) {
            Some(o) => Some(o.is_eq()),
            // Calendar years and months have no fixed UCUM equivalent: undecided; other unit mismatches differ.
            None if [a, b]
                .iter()
                .any(|q| quantity_parts(q).is_some_and(|(_, u)| matches!(u, "a" | "mo" | "year" | "years" | "month" | "months"))) =>
            {
                None
            }
            None => Some(false),
        },
        (Value::Object(x), Value::Object(y)) => {
            Some(x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w) == Some(true))))
        }
        _ => Some(a == b),
    }
}

fn values_equivalent(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) if temporal_pair(x, y).is_some() => {
            temporal_pair(x, y).and_then(|(p, q)| p.compare(&q)) == Some(std::cmp::Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => {
            let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
            norm(x) == norm(y)
        }
        _ => values_equal(a, b) == Some(true),
    }
}

/// Whether a string reads as a date or date-time (`YYYY`, `YYYY-...`) or a time (`hh:mm...`).
fn looks_temporal(s: &str) -> bool {
    let b = s.as_bytes();
    (b.len() >= 4 && b[..4].iter().all(u8::is_ascii_digit) && (b.len() == 4 || b[4] == b'-' || b[4] == b'T'))
        || (b.len() >= 5 && b[..2].iter().all(u8::is_ascii_digit) && b[2] == b':')
}

/// Both strings parsed as temporals, when both read as one.
fn temporal_pair(a: &str, b: &str) -> Option<(Temporal, Temporal)> {
    if !(looks_temporal(a) && looks_temporal(b)) {
        return None;
    }
    Some((Temporal::parse(a)?, Temporal::parse(b)?))
}

fn compare(a: &Value, b: &Value) -> Result<Option<std::cmp::Ordering>, FhirPathError> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Ok(x.as_f64().zip(y.as_f64()).and_then(|(x, y)| x.partial_cmp(&y))),
        (Value::String(x), Value::String(y)) => match temporal_pair(x, y) {
            Some((p, q)) => Ok(p.compare(&q)),
            None => Ok(Some(x.cmp(y))),
        },
        (Value::Object(_), Value::Object(_)) if quantity_parts(a).is_some() && quantity_parts(b).is_some() => Ok(quantity_cmp(a, b)),
        _ => Err(FhirPathError::eval("cannot compare values of different types")),
    }
}

fn arithmetic(op: BinOp, a: &Value, b: &Value) -> Result<Option<Value>, FhirPathError> {
    if let (BinOp::Add, Value::String(x), Value::String(y)) = (op, a, b) {
        return Ok(Some(json!(format!("{x}{y}"))));
    }
    if let (BinOp::Add | BinOp::Sub, Value::String(x), Value::Object(q)) = (op, a, b) {
        let t = Temporal::parse(x).ok_or_else(|| FhirPathError::eval("arithmetic needs numbers"))?;
        let amount = q.get("value").and_then(Value::as_f64).ok_or_else(|| FhirPathError::eval("quantity without a value"))?;
        let unit = q.get("code").or_else(|| q.get("unit")).and_then(Value::as_str).unwrap_or("");
        let amount = if op == BinOp::Sub { -amount } else { amount };
        let sum = t.add(amount, unit).ok_or_else(|| FhirPathError::eval("cannot add this quantity to a date"))?;
        return Ok(Some(Value::String(sum.format())));
    }
    let (Value::Number(x), Value::Number(y)) = (a, b) else {
        return Err(FhirPathError::eval("arithmetic needs numbers"));
    };
    if let (Some(i), Some(j)) = (x.as_i64(), y.as_i64()) {
        let r = match op {
            BinOp::Add => i.checked_add(j),
            BinOp::Sub => i.checked_sub(j),
            BinOp::Mul => i.checked_mul(j),
            BinOp::IntDiv => {
                if j == 0 {
                    return Ok(None);
                }
                i.checked_div(j)
            }
            BinOp::Mod => {
                if j == 0 {
                    return Ok(None);
                }
                i.checked_rem(j)
            }
            _ => None,
        };
        if let Some(r) = r {
            return Ok(Some(json!(r)));
        }
        if op != BinOp::Div {
            return Err(FhirPathError::eval("integer overflow"));
        }
    }
    let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
    let r = match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul => x * y,
        BinOp::Div if y == 0.0 => return Ok(None),
        BinOp::Div => x / y,
        BinOp::IntDiv if y == 0.0 => return Ok(None),
        BinOp::IntDiv => (x / y).trunc(),
        BinOp::Mod if y == 0.0 => return Ok(None),
        _ => x % y,
    };
    Ok(Number::from_f64(round_decimal(r)).map(Value::Number))
}
