//! FHIR search semantics (R4 `search.html`), pure: what a query string asks for, which values a
//! resource holds for each search parameter, and whether they match.
//!
//! - [`query`] parses the query parameters of a search into a [`SearchRequest`]: criteria
//!   (parameter, modifier, chain/`_has` path, OR-ed values; repeated parameters are AND-ed)
//!   and the result parameters (`_count`, `_sort`, `_include`, …).
//! - [`values`] extracts the typed values a parameter's FHIRPath expression selects from a
//!   resource ([`SearchValue`]), with their implicit ranges (date and number precision).
//! - [`matcher`] decides whether a resource's values satisfy one criterion, following the
//!   specification: prefixes over ranges, string folding, token forms, modifiers.
//! - [`terms`] turns values into the index terms the storage layer keys its index entries by.
//!
//! The storage layer uses the index to find candidates and [`matcher`] as the definition of a
//! match, so the two can never disagree about what a search means.

pub mod date_range;
pub mod decimal;
pub mod matcher;
pub mod query;
pub mod shape;
pub mod terms;
pub mod values;

use crate::registry::SearchParamDef;

pub use date_range::DateRange;
pub use decimal::Decimal;

/// A search on one resource type (or on all types, for system searches).
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    /// The resource type searched; `None` for a system-level search (`GET [base]?…`).
    pub resource_type: Option<String>,
    /// Every criterion must hold (repeated parameters are separate criteria).
    pub criteria: Vec<Criterion>,
    /// How results are shaped and paged.
    pub result: ResultParams,
    /// Parameters ignored in lenient handling, by name, for the self link and an
    /// OperationOutcome in the bundle (`Prefer: handling=lenient`, the default).
    pub ignored: Vec<String>,
}

/// One criterion: the parameter tested (reached through `path`), and values of which at least
/// one must match.
#[derive(Debug, Clone, PartialEq)]
pub struct Criterion {
    /// Chains and reverse chains leading from the searched type to the type that holds `param`;
    /// empty for a parameter of the searched type itself.
    pub path: Vec<Link>,
    /// The parameter tested, a definition of the generated registry.
    pub param: &'static SearchParamDef,
    /// The modifier after `:`, if any.
    pub modifier: Modifier,
    /// OR-ed values (comma-separated in the query), each parsed for the parameter's type.
    pub values: Vec<QueryValue>,
}

/// One step of a chain.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    /// Forward chain `subject:Patient.name`: follow the reference parameter `param` to
    /// resources of `target` (all of the parameter's target types that define the next
    /// parameter when `None`).
    Forward {
        /// The reference parameter followed.
        param: &'static SearchParamDef,
        /// The target type, from `:Type` or implied when the parameter has a single target.
        target: Option<String>,
    },
    /// Reverse chain `_has:Observation:patient:…`: resources of `source` whose reference
    /// parameter `param` points at the current resource.
    Reverse {
        /// The type holding the reference.
        source: String,
        /// The reference parameter of `source`.
        param: &'static SearchParamDef,
    },
}

/// A search modifier (`search.html#modifiers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modifier {
    /// No modifier.
    None,
    /// `:missing` (the value is `true` or `false`, parsed into [`QueryValue::Missing`]).
    Missing,
    /// `:exact` (string): the whole value, case and accent sensitive.
    Exact,
    /// `:contains` (string, uri): anywhere in the value, case and accent insensitive.
    Contains,
    /// `:text` (token): the display text, as a string search (R4 defines no `:text` on
    /// references; the parser refuses it there).
    Text,
    /// `:not` (token): no value matches.
    Not,
    /// `:above` (uri, token): the value is the search value or a parent of it.
    Above,
    /// `:below` (uri, token): the value is the search value or a child of it.
    Below,
    /// `:in` (token): the code is in the value set.
    In,
    /// `:not-in` (token).
    NotIn,
    /// `:of-type` (token on Identifier): `type-system|type-code|value`.
    OfType,
    /// `:identifier` (reference): match `Reference.identifier`.
    Identifier,
    /// `:[type]` (reference): the reference points at a resource of this type.
    Type(String),
}

/// A comparison prefix of number, date and quantity values (`search.html#prefix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// `eq` (the default)
    Eq,
    /// `ne`
    Ne,
    /// `gt`
    Gt,
    /// `lt`
    Lt,
    /// `ge`
    Ge,
    /// `le`
    Le,
    /// `sa`: starts after
    Sa,
    /// `eb`: ends before
    Eb,
    /// `ap`: approximately
    Ap,
}

/// One search value, parsed for its parameter's type (escapes `\,` `\$` `\|` `\\` removed).
#[derive(Debug, Clone, PartialEq)]
pub enum QueryValue {
    /// `[prefix]number`; the implicit range comes from the significant digits written.
    Number {
        /// The prefix.
        prefix: Prefix,
        /// The number as written.
        value: Decimal,
    },
    /// `[prefix]date`; the implicit range comes from the precision written.
    Date {
        /// The prefix.
        prefix: Prefix,
        /// The range the value covers.
        value: DateRange,
    },
    /// A string value (matched folded unless the modifier is `:exact`).
    String(String),
    /// `[system]|[code]`, `|[code]`, `[system]|` or `[code]`.
    Token {
        /// `None`: any system (`code`); `Some("")`: no system (`|code`); `Some(s)`: that system.
        system: Option<String>,
        /// `None` for `system|` (any code of the system).
        code: Option<String>,
    },
    /// `:of-type` value `type-system|type-code|value`.
    OfType {
        /// The identifier type's system.
        type_system: String,
        /// The identifier type's code.
        type_code: String,
        /// The identifier value.
        value: String,
    },
    /// A reference: `[type]/[id]`, `[id]`, an absolute URL, or a canonical `url|version`.
    Reference(String),
    /// `[prefix][number]|[system]|[code]`, or a bare number (any unit).
    Quantity {
        /// The prefix.
        prefix: Prefix,
        /// The number.
        value: Decimal,
        /// `None`: any system.
        system: Option<String>,
        /// `None`: any unit; matched against the code and, without a system, the unit.
        code: Option<String>,
    },
    /// A uri.
    Uri(String),
    /// A composite value: one value per component, separated by `$`.
    Composite(Vec<QueryValue>),
    /// The value of `:missing`: `true` asks for resources without a value.
    Missing(bool),
}

/// The result parameters of a search.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResultParams {
    /// `_count`: page size asked for (the caller clamps it to its maximum).
    pub count: Option<usize>,
    /// `_sort`: keys in order of precedence.
    pub sort: Vec<SortKey>,
    /// `_include` (with `:iterate` when `iterate`).
    pub include: Vec<Include>,
    /// `_revinclude`.
    pub revinclude: Vec<Include>,
    /// `_total`.
    pub total: Option<TotalMode>,
    /// `_summary`.
    pub summary: Option<SummaryMode>,
    /// `_elements`: top-level element names.
    pub elements: Vec<String>,
    // `_contained` / `_containedType` are not supported and rejected by the parser.
    /// The opaque cursor of a next/previous link (`_cursor`), as sent.
    pub cursor: Option<String>,
    /// `_type` of a system search: the resource types searched (empty: all types).
    pub types: Vec<String>,
}

/// One `_sort` key.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    /// The parameter sorted by.
    pub param: &'static SearchParamDef,
    /// `-code` sorts descending.
    pub descending: bool,
}

/// One `_include` or `_revinclude`: `source:param[:target]`, or `*`.
#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    /// The resource type holding the reference (`*` for any).
    pub source: String,
    /// The reference parameter; `None` for `*` (every reference parameter of `source`).
    pub param: Option<&'static SearchParamDef>,
    /// Only references to this type.
    pub target: Option<String>,
    /// `:iterate` (or the R4 alias `:recurse`).
    pub iterate: bool,
}

/// `_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotalMode {
    /// `none`
    None,
    /// `estimate`
    Estimate,
    /// `accurate`
    Accurate,
}

/// `_summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryMode {
    /// `true`: only the elements marked as summary.
    True,
    /// `text`: text, id, meta and mandatory top-level elements.
    Text,
    /// `data`: everything but the narrative.
    Data,
    /// `count`: the total only, no entries.
    Count,
    /// `false`: everything.
    False,
}

/// The values a resource holds for one search parameter, as [`values::extract`] returns them.
#[derive(Debug, Clone, PartialEq)]
pub enum SearchValue {
    /// A number (integer, decimal) and its implicit range.
    Number(Decimal),
    /// A date, date-time, instant or Period as a range (open ends are the extremes).
    Date(DateRange),
    /// A string (string, markdown, each part of a HumanName or Address), as written.
    String(String),
    /// A token: a code, Coding, Identifier or ContactPoint (`code` holds the value), boolean.
    Token {
        /// The system, when there is one.
        system: Option<String>,
        /// The code or value.
        code: String,
    },
    /// The text of a token, for `:text`: a Coding's display, a CodeableConcept's text, an
    /// Identifier's type text.
    TokenText(String),
    /// An Identifier's type coding and value, for `:of-type`.
    IdentifierOfType {
        /// The type coding's system.
        type_system: String,
        /// The type coding's code.
        type_code: String,
        /// The identifier's value.
        value: String,
    },
    /// A reference, normalised: `Type/id` for relative references (any `/_history/n` removed),
    /// the absolute URL otherwise, or the canonical (`url` or `url|version`).
    Reference {
        /// The normalised reference.
        reference: String,
        /// The target type when known (from the reference or `Reference.type`).
        target_type: Option<String>,
    },
    /// A `Reference.identifier`, for `:identifier`.
    ReferenceIdentifier {
        /// The identifier's system.
        system: Option<String>,
        /// The identifier's value.
        value: String,
    },
    /// A Quantity (Age, Duration, Money, …).
    Quantity {
        /// The value.
        value: Decimal,
        /// The system.
        system: Option<String>,
        /// The code.
        code: Option<String>,
        /// The human unit.
        unit: Option<String>,
    },
    /// A uri, url or canonical, as written.
    Uri(String),
    /// One item selected by a composite parameter: the values of each component, in order.
    Composite(Vec<Vec<SearchValue>>),
}
