//! Parsed expressions, once per search parameter and resource type, kept for the process.

use std::borrow::Cow;
use std::sync::OnceLock;

use crate::fhirpath::Expression;
use crate::registry::{self, SearchParamDef, SearchParamType};

/// A parameter's parsed expressions for one resource type.
#[derive(Debug, Clone)]
pub(super) struct Compiled {
    /// The parameter's expression; `None` when it has none or it does not parse.
    pub(super) expression: Option<Expression>,
    /// A composite's components, in order.
    pub(super) components: Vec<Component>,
}

/// One component of a composite parameter.
#[derive(Debug, Clone)]
pub(super) struct Component {
    /// The type of the component's definition; `None` when the registry does not know it.
    pub(super) kind: Option<SearchParamType>,
    /// The component's expression, relative to each item; `None` when it does not parse.
    pub(super) expression: Option<Expression>,
}

/// The parsed expressions of every search parameter of the resource type at position `t` of
/// [`registry::resource_types`], in [`registry::search_params`] order; parsed on first use.
pub(super) fn compiled_of_type(t: usize) -> &'static [Compiled] {
    static TABLE: OnceLock<Vec<OnceLock<Vec<Compiled>>>> = OnceLock::new();
    let types = registry::resource_types();
    let table = TABLE.get_or_init(|| types.iter().map(|_| OnceLock::new()).collect());
    match (table.get(t), types.get(t)) {
        (Some(slot), Some(resource_type)) => {
            slot.get_or_init(|| registry::search_params(resource_type).map(|p| build(resource_type, p)).collect())
        }
        _ => &[],
    }
}

/// The parsed expressions of `param` for `resource_type`: from the table when the parameter
/// is one of the type's (the registry's), parsed on the spot otherwise.
pub(super) fn compiled(resource_type: &str, param: &SearchParamDef) -> Cow<'static, Compiled> {
    let types = registry::resource_types();
    let cached = types.binary_search(&resource_type).ok().and_then(|t| {
        let position = registry::search_params(types[t]).position(|p| std::ptr::eq(p, param))?;
        compiled_of_type(t).get(position)
    });
    match cached {
        Some(compiled) => Cow::Borrowed(compiled),
        None => Cow::Owned(build(resource_type, param)),
    }
}

/// Parses the expressions (the registry's all parse: a test checks it).
fn build(resource_type: &str, param: &SearchParamDef) -> Compiled {
    let expression = param.expression_for(resource_type).and_then(|e| Expression::parse(&erratum(e)).ok());
    let components = param
        .component_defs()
        .map(|(component, def)| Component { kind: def.map(|d| d.kind), expression: Expression::parse(&erratum(component.expression)).ok() })
        .collect();
    Compiled { expression, components }
}

/// An R4 expression with its known errors corrected: `Observation-code-value-date` selects its
/// value with `value.ofType(DateTime)`, the FHIRPath System type, which no FHIR `dateTime`
/// element is (R5 writes `value.ofType(dateTime)`).
fn erratum(expression: &str) -> Cow<'_, str> {
    const SYSTEM_DATE_TIME: &str = "ofType(DateTime)";
    if expression.contains(SYSTEM_DATE_TIME) {
        Cow::Owned(expression.replace(SYSTEM_DATE_TIME, "ofType(dateTime)"))
    } else {
        Cow::Borrowed(expression)
    }
}
