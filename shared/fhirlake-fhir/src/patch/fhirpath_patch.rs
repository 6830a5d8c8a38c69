//! FHIRPath Patch: a `Parameters` resource whose `operation` parameters add, insert, delete, replace or move
//! elements selected by FHIRPath (<http://hl7.org/fhir/R4/fhirpatch.html>).

use serde_json::{Map, Value};

use crate::fhirpath::{Expression, Location, Segment};
use crate::registry::{self, ElementDef};

use super::location::{children_at, edit_list, get_mut, holder_mut, remove, split_property};
use super::{check_identity, PatchError};

/// The most operations one patch may carry.
const MAX_OPERATIONS: usize = 10_000;
/// The deepest nesting of `part` lists accepted for a complex value.
const MAX_PART_DEPTH: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Add,
    Insert,
    Delete,
    Replace,
    Move,
}

/// A value to write, with the type its `value[x]` key named (`DateTime` for `valueDateTime`), if any.
struct Payload {
    json: Value,
    type_suffix: Option<String>,
}

struct Operation {
    kind: Kind,
    path: Expression,
    name: Option<String>,
    value: Option<Value>,
    index: Option<usize>,
    source: Option<usize>,
    destination: Option<usize>,
}

/// Applies the FHIRPath Patch `parameters` to `resource`, operations in order, all or nothing.
///
/// Errors: [`PatchError::Malformed`] when `parameters` is not a valid FHIRPath Patch document (not a `Parameters`,
/// an unknown operation type, a missing part, an unparseable path); [`PatchError::Unprocessable`] when an
/// operation cannot be applied (its path selects no element or several, an index is out of range, the value does not
/// fit, or the result changes `resourceType` or `id`). A `delete` whose path selects nothing does nothing.
pub fn apply_fhirpath_patch(resource: &Value, parameters: &Value) -> Result<Value, PatchError> {
    let ops = parse_parameters(parameters)?;
    let mut doc = resource.clone();
    for (i, op) in ops.iter().enumerate() {
        apply(&mut doc, op).map_err(|e| match e {
            PatchError::Unprocessable(m) => PatchError::Unprocessable(format!("operation {i}: {m}")),
            PatchError::Malformed(m) => PatchError::Malformed(format!("operation {i}: {m}")),
            other => other,
        })?;
    }
    check_identity(resource, &doc)?;
    Ok(doc)
}

fn malformed(m: impl Into<String>) -> PatchError {
    PatchError::Malformed(m.into())
}

fn unprocessable(m: impl Into<String>) -> PatchError {
    PatchError::Unprocessable(m.into())
}

fn parse_parameters(parameters: &Value) -> Result<Vec<Operation>, PatchError> {
    if parameters.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(malformed("a fhirpath patch must be a Parameters resource"));
    }
    let params = match parameters.get("parameter") {
        Some(Value::Array(p)) => p.as_slice(),
        None => &[],
        Some(_) => return Err(malformed("Parameters.parameter must be a list")),
    };
    if params.len() > MAX_OPERATIONS {
        return Err(malformed("too many patch operations"));
    }
    params.iter().enumerate().map(|(i, p)| parse_operation(p).map_err(|e| malformed(format!("operation {i}: {}", strip(e))))).collect()
}

fn strip(e: PatchError) -> String {
    match e {
        PatchError::Malformed(m) | PatchError::Unprocessable(m) | PatchError::TestFailed(m) => m,
    }
}

fn parse_operation(p: &Value) -> Result<Operation, PatchError> {
    if p.get("name").and_then(Value::as_str) != Some("operation") {
        return Err(malformed("every parameter must be named 'operation'"));
    }
    let parts = p.get("part").and_then(Value::as_array).ok_or_else(|| malformed("an operation needs parts"))?;
    let mut kind = None;
    let mut path = None;
    let mut name = None;
    let mut value = None;
    let (mut index, mut source, mut destination) = (None, None, None);
    for part in parts {
        let part_name = part.get("name").and_then(Value::as_str).ok_or_else(|| malformed("a part needs a name"))?;
        match part_name {
            "type" => {
                let code = primitive_str(part).ok_or_else(|| malformed("type must be a code"))?;
                kind = Some(match code {
                    "add" => Kind::Add,
                    "insert" => Kind::Insert,
                    "delete" => Kind::Delete,
                    "replace" => Kind::Replace,
                    "move" => Kind::Move,
                    _ => return Err(malformed("type must be add, insert, delete, replace or move")),
                });
            }
            "path" => {
                let src = primitive_str(part).ok_or_else(|| malformed("path must be a string"))?;
                path = Some(Expression::parse(src).map_err(|e| malformed(format!("path: {e}")))?);
            }
            "name" => name = Some(primitive_str(part).ok_or_else(|| malformed("name must be a string"))?.to_string()),
            "value" => {
                // Checked now; assembled against the element definitions when applied.
                assemble(part, None, 0)?;
                value = Some(part.clone());
            }
            "index" => index = Some(integer(part, "index")?),
            "source" => source = Some(integer(part, "source")?),
            "destination" => destination = Some(integer(part, "destination")?),
            _ => return Err(malformed("unknown operation part")),
        }
    }
    let kind = kind.ok_or_else(|| malformed("an operation needs a type"))?;
    let path = path.ok_or_else(|| malformed("an operation needs a path"))?;
    let missing = |what: &str| malformed(format!("this operation needs {what}"));
    match kind {
        Kind::Add if name.is_none() => return Err(missing("a name")),
        Kind::Add | Kind::Insert | Kind::Replace if value.is_none() => return Err(missing("a value")),
        Kind::Insert if index.is_none() => return Err(missing("an index")),
        Kind::Move if source.is_none() || destination.is_none() => return Err(missing("a source and a destination")),
        _ => {}
    }
    Ok(Operation { kind, path, name, value, index, source, destination })
}

/// The `value[x]` of a part, as a string (`valueCode`, `valueString`, `valueUri`, ...).
fn primitive_str(part: &Value) -> Option<&str> {
    let obj = part.as_object()?;
    obj.iter().find(|(k, _)| k.starts_with("value")).and_then(|(_, v)| v.as_str())
}

fn integer(part: &Value, what: &str) -> Result<usize, PatchError> {
    let obj = part.as_object().ok_or_else(|| malformed(format!("{what} must be an integer")))?;
    obj.iter()
        .find(|(k, _)| k.starts_with("value"))
        .and_then(|(_, v)| v.as_u64())
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| malformed(format!("{what} must be a non-negative integer")))
}

/// The value carried by a `value` part: its `value[x]`, its `resource`, or an element assembled from its `part`s.
/// `elements` are the definitions of the value's children when known: they name choice children by type
/// (`value` + `Quantity`) and make repeating children lists.
fn assemble(part: &Value, elements: Option<&'static [ElementDef]>, depth: usize) -> Result<Payload, PatchError> {
    if depth > MAX_PART_DEPTH {
        return Err(malformed("value parts nested too deeply"));
    }
    let obj = part.as_object().ok_or_else(|| malformed("a part must be an object"))?;
    let mut found: Option<Payload> = None;
    for (k, v) in obj {
        let typed = k.strip_prefix("value").filter(|s| s.starts_with(|c: char| c.is_ascii_uppercase()));
        let candidate = if let Some(suffix) = typed {
            Payload { json: v.clone(), type_suffix: Some(suffix.to_string()) }
        } else if k == "resource" {
            Payload { json: v.clone(), type_suffix: None }
        } else if k == "part" {
            let subparts = v.as_array().ok_or_else(|| malformed("part must be a list"))?;
            Payload { json: Value::Object(assemble_parts(subparts, elements, depth)?), type_suffix: None }
        } else {
            continue;
        };
        if found.is_some() {
            return Err(malformed("a value part must carry exactly one value"));
        }
        found = Some(candidate);
    }
    found.ok_or_else(|| malformed("a value part must carry a value"))
}

fn assemble_parts(subparts: &[Value], elements: Option<&'static [ElementDef]>, depth: usize) -> Result<Map<String, Value>, PatchError> {
    let mut out = Map::new();
    for sp in subparts {
        let n = sp.get("name").and_then(Value::as_str).ok_or_else(|| malformed("a part needs a name"))?;
        let stem = n.strip_suffix("[x]").unwrap_or(n);
        let choice = elements.and_then(|c| c.iter().find(|e| e.choice && e.name == stem));
        // The child's own definitions, found before assembling it (a choice child's depend on its type).
        let suffix = typed_suffix(sp);
        let key = match (choice, &suffix) {
            (Some(_), Some(t)) => format!("{stem}{t}"),
            _ => stem.to_string(),
        };
        let m = elements.and_then(|c| registry::find_element(c, &key));
        let child_elements = m.and_then(|m| super::location::children_of(m, &Value::Null));
        let child = assemble(sp, child_elements, depth + 1)?;
        let repeating = m.is_some_and(|m| m.element.max != Some(1));
        match out.get_mut(&key) {
            Some(Value::Array(a)) => a.push(child.json),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, child.json]);
            }
            None if repeating => {
                out.insert(key, Value::Array(vec![child.json]));
            }
            None => {
                out.insert(key, child.json);
            }
        }
    }
    Ok(out)
}

/// The type suffix of a part's `value[x]` key, if it has one.
fn typed_suffix(part: &Value) -> Option<String> {
    part.as_object()?
        .keys()
        .find_map(|k| k.strip_prefix("value").filter(|s| s.starts_with(|c: char| c.is_ascii_uppercase())))
        .map(str::to_string)
}

fn locate(doc: &Value, path: &Expression) -> Result<Vec<Location>, PatchError> {
    path.locate(doc).map_err(|e| unprocessable(format!("path: {e}")))
}

fn single_target(doc: &Value, path: &Expression) -> Result<Location, PatchError> {
    let mut locs = locate(doc, path)?;
    match locs.len() {
        0 => Err(unprocessable("path selects no element")),
        1 => Ok(locs.remove(0)),
        _ => Err(unprocessable("path selects more than one element")),
    }
}

fn apply(doc: &mut Value, op: &Operation) -> Result<(), PatchError> {
    match op.kind {
        Kind::Delete => {
            let locs = locate(doc, &op.path)?;
            match locs.len() {
                0 => Ok(()),
                1 => remove(doc, &locs[0].segments),
                _ => Err(unprocessable("path selects more than one element")),
            }
        }
        Kind::Replace => {
            let target = single_target(doc, &op.path)?;
            let value = op.value.as_ref().ok_or_else(|| malformed("replace needs a value"))?;
            replace(doc, &target.segments, value)
        }
        Kind::Add => {
            let target = single_target(doc, &op.path)?;
            let name = op.name.as_deref().ok_or_else(|| malformed("add needs a name"))?;
            let value = op.value.as_ref().ok_or_else(|| malformed("add needs a value"))?;
            add(doc, &target.segments, name, value)
        }
        Kind::Insert | Kind::Move => {
            let (parent, name) = list_container(doc, &op.path)?;
            let children = children_at(doc, &parent);
            let holder = holder_mut(doc, &parent)?;
            if op.kind == Kind::Insert {
                let part = op.value.as_ref().ok_or_else(|| malformed("insert needs a value"))?;
                let json = assemble(part, children.and_then(|c| element_children(c, &name)), 0)?.json;
                let index = op.index.ok_or_else(|| malformed("insert needs an index"))?;
                edit_list(holder, &name, |list| {
                    if index > list.len() {
                        return Err(unprocessable("insert index is past the end of the list"));
                    }
                    list.insert(index, json.clone());
                    Ok(())
                })
            } else {
                let (from, to) = (op.source.unwrap_or(0), op.destination.unwrap_or(0));
                if !holder.contains_key(&name) {
                    return Err(unprocessable("path selects no list"));
                }
                edit_list(holder, &name, |list| {
                    if from >= list.len() || to >= list.len() {
                        return Err(unprocessable("move index is outside the list"));
                    }
                    let item = list.remove(from);
                    list.insert(to, item);
                    Ok(())
                })
            }
        }
    }
}

/// The child definitions of the element `name` among `parent_children`.
fn element_children(parent_children: &'static [ElementDef], name: &str) -> Option<&'static [ElementDef]> {
    let m = registry::find_element(parent_children, name)?;
    super::location::children_of(m, &Value::Null)
}

/// The list a path names, as (location of the element holding it, property name). `base.name` works even when
/// the list is empty; other paths must select members of one list.
fn list_container(doc: &Value, path: &Expression) -> Result<(Vec<Segment>, String), PatchError> {
    if let Some((base, name)) = path.split_member() {
        let parent = single_target(doc, &base)?;
        return Ok((parent.segments, name));
    }
    let locs = locate(doc, path)?;
    let mut container: Option<(Vec<Segment>, String)> = None;
    for l in &locs {
        let (parent, key, _) = split_property(&l.segments).ok_or_else(|| unprocessable("path does not select a list"))?;
        let c = (parent.to_vec(), key.to_string());
        if container.as_ref().is_some_and(|x| *x != c) {
            return Err(unprocessable("path selects elements of more than one list"));
        }
        container = Some(c);
    }
    container.ok_or_else(|| unprocessable("path selects no list"))
}

fn replace(doc: &mut Value, target: &[Segment], part: &Value) -> Result<(), PatchError> {
    let (parent, key, index) = split_property(target).ok_or_else(|| unprocessable("cannot replace the resource itself"))?;
    let parent_children = children_at(doc, parent);
    let value = assemble(part, None, 0)?;
    // A choice element takes the key of the new value's type (`deceasedBoolean` -> `deceasedDateTime`).
    let mut new_key = key.to_string();
    if let (Some(children), Some(suffix), None) = (parent_children, &value.type_suffix, index) {
        if let Some(m) = registry::find_element(children, key).filter(|m| m.element.choice) {
            let candidate = format!("{}{suffix}", m.element.name);
            if registry::find_element(children, &candidate).is_some_and(|c| c.element.choice) {
                new_key = candidate;
            } else {
                return Err(unprocessable("the value's type is not allowed for this element"));
            }
        }
    }
    let json = assemble(part, parent_children.and_then(|c| element_children(c, &new_key)), 0)?.json;
    let obj = get_mut(doc, parent)?.as_object_mut().ok_or_else(|| unprocessable("the selected element is gone"))?;
    let ext_key = format!("_{key}");
    match index {
        Some(i) => {
            let slot = obj.get_mut(key).and_then(|l| l.get_mut(i)).ok_or_else(|| unprocessable("the selected element is gone"))?;
            *slot = json;
            // The old value's extensions go with it.
            if let Some(Value::Array(ext)) = obj.get_mut(&ext_key) {
                if let Some(e) = ext.get_mut(i) {
                    *e = Value::Null;
                }
                if ext.iter().all(Value::is_null) {
                    obj.remove(&ext_key);
                }
            }
        }
        None => {
            obj.remove(key);
            obj.remove(&ext_key);
            obj.insert(new_key, json);
        }
    }
    Ok(())
}

fn add(doc: &mut Value, target: &[Segment], name: &str, part: &Value) -> Result<(), PatchError> {
    let value = assemble(part, None, 0)?;
    let children = children_at(doc, target);
    let stem = name.strip_suffix("[x]").unwrap_or(name);
    // A choice element is named by its stem; the key takes the value's type (`deceased` + `Boolean`).
    let mut key = stem.to_string();
    let mut element = children.and_then(|c| registry::find_element(c, stem));
    if let Some(c) = children {
        let choice = c.iter().find(|e| e.choice && e.name == stem);
        if let Some(choice) = choice {
            let suffix = value.type_suffix.as_deref().ok_or_else(|| unprocessable("a choice element needs a typed value"))?;
            key = format!("{}{suffix}", choice.name);
            element = registry::find_element(c, &key);
            if element.is_none() {
                return Err(unprocessable("the value's type is not allowed for this element"));
            }
        }
    }
    let json = assemble(part, element.and_then(|m| super::location::children_of(m, &Value::Null)), 0)?.json;
    let repeating = element.map(|m| m.element.max != Some(1));
    let holder = holder_mut(doc, target)?;
    let stem_taken = element.is_some_and(|m| m.element.choice)
        && holder.keys().any(|k| {
            k != &key && registry::find_element(children.unwrap_or(&[]), k).is_some_and(|o| o.element.name == stem && o.element.choice)
        });
    if stem_taken {
        return Err(unprocessable("the element already has a value"));
    }
    match (holder.get(&key), repeating) {
        (Some(Value::Array(_)), _) | (None, Some(true)) => edit_list(holder, &key, |list| {
            list.push(json.clone());
            Ok(())
        }),
        (Some(_), _) => Err(unprocessable("the element already has a value")),
        (None, _) => {
            holder.insert(key, json);
            Ok(())
        }
    }
}
