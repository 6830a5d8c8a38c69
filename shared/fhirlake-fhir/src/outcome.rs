//! OperationOutcome: the body of every FHIR error response.

use serde_json::{json, Value};

/// An issue's severity (`OperationOutcome.issue.severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The operation failed.
    Error,
    /// The operation succeeded with a caveat.
    Warning,
    /// Informational.
    Information,
}

impl Severity {
    fn code(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// One issue: severity, the `IssueType` code, a human-readable diagnostic and optional FHIRPath locations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Severity.
    pub severity: Severity,
    /// An `http://hl7.org/fhir/issue-type` code: invalid, structure, required, value, not-found, ...
    pub code: &'static str,
    /// What went wrong, for a person. Never echoes resource content.
    pub diagnostics: String,
    /// FHIRPath expressions locating the problem in the submitted resource.
    pub expression: Vec<String>,
}

impl Issue {
    /// An error issue.
    pub fn error(code: &'static str, diagnostics: impl Into<String>) -> Self {
        Issue { severity: Severity::Error, code, diagnostics: diagnostics.into(), expression: Vec::new() }
    }
    /// An informational issue.
    pub fn information(code: &'static str, diagnostics: impl Into<String>) -> Self {
        Issue { severity: Severity::Information, code, diagnostics: diagnostics.into(), expression: Vec::new() }
    }
    /// Adds the location of the problem.
    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression.push(expression.into());
        self
    }
}

/// Renders issues as an OperationOutcome resource.
pub fn operation_outcome(issues: &[Issue]) -> Value {
    let issues: Vec<Value> = issues
        .iter()
        .map(|i| {
            let mut v = json!({"severity": i.severity.code(), "code": i.code, "diagnostics": i.diagnostics});
            if !i.expression.is_empty() {
                v["expression"] = json!(i.expression);
            }
            v
        })
        .collect();
    json!({"resourceType": "OperationOutcome", "issue": issues})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_issues_with_locations() {
        let oo = operation_outcome(&[Issue::error("invalid", "bad gender").at("Patient.gender")]);
        assert_eq!(oo["resourceType"], "OperationOutcome");
        assert_eq!(oo["issue"][0]["severity"], "error");
        assert_eq!(oo["issue"][0]["code"], "invalid");
        assert_eq!(oo["issue"][0]["expression"][0], "Patient.gender");
    }
}
