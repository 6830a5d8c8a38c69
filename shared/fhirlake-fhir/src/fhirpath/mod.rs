//! FHIRPath over JSON resources: the stable facade the rest of fhirlake uses.
//!
//! [`Expression::parse`] parses once; [`Expression::evaluate`] runs over a `serde_json::Value` resource, synchronously,
//! without any model download or IO. Simple paths (`Type.a.b`, `Type.value as Quantity`, unions of these: most R4
//! search-parameter expressions) are compiled to a direct walk over the JSON; everything else goes through a
//! tree-walking evaluator ([`Expression::is_compiled`] tells which).
//!
//! Element types come from the generated R4 registry (`Patient.gender` is a `code`, `Patient.name` a `HumanName`,
//! inheritance such as `code` is a `string` or `Age` is a `Quantity`), falling back to what the JSON says (choice
//! suffixes, `resourceType`, the JSON kind of primitives); literals and computed values have System types. Dates,
//! date-times and times are compared at their precision and support calendar arithmetic. The engine is checked against
//! HL7's FHIRPath R4 test suite (`tests/fhirpath_conformance.rs`). `resolve()` returns a contained
//! resource for `#id` references and otherwise a stub `{resourceType, id}` typed from the reference, which is what
//! search parameters such as `Observation.subject.where(resolve() is Patient)` need.
//!
//! [`Expression::locate`] returns where each result lives, for FHIRPath Patch.

mod ast;
mod codec;
mod eval;
mod lexer;
mod simple;
mod temporal;
mod types;

use serde_json::Value;

pub use eval::Segment;

/// A FHIRPath parse or evaluation error. Messages never contain resource content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FhirPathError {
    /// The expression is not valid FHIRPath (or uses syntax fhirlake does not support).
    #[error("invalid fhirpath expression at offset {position}: {message}")]
    Parse {
        /// What is wrong.
        message: String,
        /// Byte offset in the expression.
        position: usize,
    },
    /// Evaluation failed (a function that needs one value got several, an unsupported function, ...).
    #[error("fhirpath evaluation failed: {0}")]
    Eval(String),
}

impl FhirPathError {
    pub(crate) fn parse(message: impl Into<String>, position: usize) -> Self {
        FhirPathError::Parse { message: message.into(), position }
    }
    pub(crate) fn eval(message: impl Into<String>) -> Self {
        FhirPathError::Eval(message.into())
    }
}

/// A parsed FHIRPath expression. Cheap to share across threads; evaluate it as often as needed.
#[derive(Debug, Clone)]
pub struct Expression {
    source: String,
    ast: ast::Expr,
    compiled: Option<simple::Compiled>,
}

/// Where a selected element lives in the resource: object keys and array indexes from the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The steps from the resource root; empty for the root itself.
    pub segments: Vec<Segment>,
}

impl Location {
    /// The location as an RFC 6901 JSON pointer (`/name/0/given/1`).
    pub fn pointer(&self) -> String {
        let mut out = String::new();
        for s in &self.segments {
            out.push('/');
            match s {
                Segment::Key(k) => out.push_str(&k.replace('~', "~0").replace('/', "~1")),
                Segment::Index(i) => out.push_str(&i.to_string()),
            }
        }
        out
    }
}

impl Expression {
    /// Parses `src`.
    pub fn parse(src: &str) -> Result<Self, FhirPathError> {
        let ast = ast::parse(src)?;
        let compiled = simple::compile(&ast);
        Ok(Expression { source: src.to_string(), ast, compiled })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether evaluation takes the compiled fast path.
    pub fn is_compiled(&self) -> bool {
        self.compiled.is_some()
    }

    /// Evaluates against `resource` (the root, `%resource` and initial `$this`). Primitives that carry only
    /// extensions (a `null` value with a `_name` sibling) are left out of the result.
    pub fn evaluate(&self, resource: &Value) -> Result<Vec<Value>, FhirPathError> {
        if let Some(c) = &self.compiled {
            return Ok(c.evaluate(resource));
        }
        self.evaluate_general(resource)
    }

    /// Calls `each` with every element the expression selects from `resource`, in order: the fast
    /// path lends them from the resource, so nothing is copied.
    pub fn for_each_selected(&self, resource: &Value, mut each: impl FnMut(&Value)) -> Result<(), FhirPathError> {
        match &self.compiled {
            Some(c) => c.select(resource).into_iter().for_each(each),
            None => self.evaluate_general(resource)?.iter().for_each(&mut each),
        }
        Ok(())
    }

    /// Evaluates with the general evaluator, bypassing the fast path (for tests and benchmarks).
    #[doc(hidden)]
    pub fn evaluate_general(&self, resource: &Value) -> Result<Vec<Value>, FhirPathError> {
        let out = eval::Evaluator::new(resource, false).run(&self.ast)?;
        Ok(out.into_iter().filter_map(eval::Item::into_json).collect())
    }

    /// Evaluates as a boolean condition: `Some(b)` for a single boolean (any other single value counts as true),
    /// `None` for an empty result, an error for several values.
    pub fn evaluate_bool(&self, resource: &Value) -> Result<Option<bool>, FhirPathError> {
        let out = eval::Evaluator::new(resource, false).run(&self.ast)?;
        eval::to_bool(&out)
    }

    /// For `base.name`, the expression `base` and the member name (used to find a list that may be empty).
    pub(crate) fn split_member(&self) -> Option<(Expression, String)> {
        match &self.ast {
            ast::Expr::Member(base, name) => {
                let ast = (**base).clone();
                let compiled = simple::compile(&ast);
                Some((Expression { source: self.source.clone(), ast, compiled }, name.clone()))
            }
            _ => None,
        }
    }

    /// Evaluates against `resource` and returns where each result lives. Fails if a result is a computed value
    /// (`1 + 1`, `name.count()`, a resolved external reference) rather than an element of the resource.
    pub fn locate(&self, resource: &Value) -> Result<Vec<Location>, FhirPathError> {
        let out = eval::Evaluator::new(resource, true).run(&self.ast)?;
        out.into_iter()
            .map(|it| {
                it.loc
                    .map(|l| Location { segments: l.segments() })
                    .ok_or_else(|| FhirPathError::eval("expression selects a computed value, not an element"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
