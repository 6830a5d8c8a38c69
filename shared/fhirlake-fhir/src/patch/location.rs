//! Editing a resource at a [`Location`](crate::fhirpath::Location), keeping primitives' `_name` siblings aligned,
//! and looking up the element definition that a location stands for.

use serde_json::{Map, Value};

use crate::fhirpath::Segment;
use crate::registry::{self, ElementDef, ElementMatch};

use super::PatchError;

fn gone() -> PatchError {
    PatchError::Unprocessable("the selected element is no longer in the resource".into())
}

/// The value at `segments`.
pub(super) fn get_mut<'v>(doc: &'v mut Value, segments: &[Segment]) -> Result<&'v mut Value, PatchError> {
    let mut cur = doc;
    for s in segments {
        cur = match s {
            Segment::Key(k) => cur.as_object_mut().and_then(|o| o.get_mut(k)),
            Segment::Index(i) => cur.as_array_mut().and_then(|a| a.get_mut(*i)),
        }
        .ok_or_else(gone)?;
    }
    Ok(cur)
}

/// The object that holds property `name` of the element at `segments`: the element itself when it is an object,
/// or, for a primitive, its `_name` sibling (created when missing).
pub(super) fn holder_mut<'v>(doc: &'v mut Value, segments: &[Segment]) -> Result<&'v mut Map<String, Value>, PatchError> {
    let is_object = get_mut(doc, segments)?.is_object();
    if is_object {
        return get_mut(doc, segments)?.as_object_mut().ok_or_else(gone);
    }
    // A primitive: its id and extensions live in `_key` (or `_key[i]`), next to it.
    let (parent, key, index) =
        split_property(segments).ok_or_else(|| PatchError::Unprocessable("the selected element cannot hold child elements".into()))?;
    let parent = get_mut(doc, parent)?.as_object_mut().ok_or_else(gone)?;
    let ext_key = format!("_{key}");
    let slot = match index {
        None => parent.entry(ext_key).or_insert_with(|| Value::Object(Map::new())),
        Some(i) => {
            let len = parent.get(key).and_then(Value::as_array).map_or(0, Vec::len);
            let arr = parent.entry(ext_key).or_insert_with(|| Value::Array(Vec::new()));
            let arr = arr.as_array_mut().ok_or_else(|| PatchError::Unprocessable("malformed primitive extension".into()))?;
            arr.resize(len.max(arr.len()).max(i + 1), Value::Null);
            let slot = &mut arr[i];
            if slot.is_null() {
                *slot = Value::Object(Map::new());
            }
            slot
        }
    };
    slot.as_object_mut().ok_or_else(|| PatchError::Unprocessable("malformed primitive extension".into()))
}

/// Splits an element location into its parent object, property name and array index (for list members).
pub(super) fn split_property(segments: &[Segment]) -> Option<(&[Segment], &str, Option<usize>)> {
    match segments {
        [parent @ .., Segment::Key(k), Segment::Index(i)] => Some((parent, k, Some(*i))),
        [parent @ .., Segment::Key(k)] => Some((parent, k, None)),
        _ => None,
    }
}

/// Removes the element at `segments` (and its `_name` sibling entry); an emptied list loses its property.
pub(super) fn remove(doc: &mut Value, segments: &[Segment]) -> Result<(), PatchError> {
    let (parent, key, index) =
        split_property(segments).ok_or_else(|| PatchError::Unprocessable("cannot delete the resource itself".into()))?;
    let obj = get_mut(doc, parent)?.as_object_mut().ok_or_else(gone)?;
    let ext_key = format!("_{key}");
    match index {
        None => {
            obj.remove(key).ok_or_else(gone)?;
            obj.remove(&ext_key);
        }
        Some(i) => {
            edit_list(obj, key, |list| {
                if i < list.len() {
                    list.remove(i);
                    Ok(())
                } else {
                    Err(gone())
                }
            })?;
        }
    }
    Ok(())
}

/// Applies `edit` to the list property `key` of `obj` and the same index edit to its `_key` sibling list, so that
/// primitive values and their extensions stay aligned. Empty lists are removed.
pub(super) fn edit_list(
    obj: &mut Map<String, Value>,
    key: &str,
    edit: impl Fn(&mut Vec<Value>) -> Result<(), PatchError>,
) -> Result<(), PatchError> {
    let ext_key = format!("_{key}");
    let len = match obj.get(key) {
        Some(Value::Array(a)) => a.len(),
        None => 0,
        Some(_) => return Err(PatchError::Unprocessable("the selected element is not a list".into())),
    };
    let list = obj.entry(key.to_string()).or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(a) = list {
        edit(a)?;
    }
    if let Some(Value::Array(ext)) = obj.get_mut(&ext_key) {
        ext.resize(len.max(ext.len()), Value::Null);
        // The sibling list gets the same edit with nulls standing in for new values.
        let mut shadow: Vec<Value> = std::mem::take(ext);
        edit(&mut shadow)?;
        for v in shadow.iter_mut() {
            if !v.is_object() {
                *v = Value::Null;
            }
        }
        *ext = shadow;
    }
    for k in [key, ext_key.as_str()] {
        let empty = match obj.get(k) {
            Some(Value::Array(a)) => a.iter().all(Value::is_null),
            _ => false,
        };
        if empty {
            obj.remove(k);
        }
    }
    Ok(())
}

/// The child element definitions of the element at `segments`, when the registry knows them.
pub(super) fn children_at(doc: &Value, segments: &[Segment]) -> Option<&'static [ElementDef]> {
    let mut value = doc;
    let mut elements = registry::type_def(doc.get("resourceType")?.as_str()?)?.elements;
    let mut i = 0;
    while i < segments.len() {
        let Segment::Key(k) = &segments[i] else { return None };
        let m = registry::find_element(elements, k)?;
        value = value.get(k)?;
        if let Some(Segment::Index(j)) = segments.get(i + 1) {
            value = value.get(*j)?;
            i += 1;
        }
        elements = children_of(m, value)?;
        i += 1;
    }
    Some(elements)
}

/// The child element definitions of a value of element `m`.
pub(super) fn children_of(m: ElementMatch, value: &Value) -> Option<&'static [ElementDef]> {
    if m.element.has_inline_children() {
        return Some(m.element.children);
    }
    let t = m.type_def?;
    if t.name == "Resource" {
        return registry::type_def(value.get("resourceType")?.as_str()?).map(|t| t.elements);
    }
    Some(t.elements)
}
