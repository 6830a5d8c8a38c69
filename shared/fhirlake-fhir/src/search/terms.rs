//! Index terms: how search values become keys of index entries, and which keys a criterion
//! looks up. The storage layer keys entries by these terms (equality terms blinded with a
//! per-datastore key, ordered terms as order-preserving strings); `docs/search.md` shows the
//! item layout.
//!
//! The index finds candidates; [`super::matcher`] decides. A lookup is *complete* when every
//! resource it finds matches and it finds every match, so counting needs no verification;
//! otherwise the caller verifies each candidate. [`Lookup::Scan`] means no index narrows the
//! criterion (`:not`, `:contains`, `:missing`, `ne`, `_text`): the caller walks every resource
//! of the type.
//!
//! | value | equality terms (`Exact`) | ordered terms |
//! |---|---|---|
//! | token `system|code` | `c|code`, and `s|system|code` or (no system) `n|code` | |
//! | identifier type | `t|type-system|type-code|value` | |
//! | string | `p|{prefix}` of the folded value, for prefix lengths 1–6, 8, 12, 16 | |
//! | reference | `r|Type/id` (or the url; canonicals also without `|version`) | |
//! | reference identifier | `i|system|value`, `j|value` | |
//! | uri | `u|uri` | |
//! | date | | low end and high end, as two entries, in the partitions of the value's [`Span`] |
//! | number | | the value |
//! | quantity | | the value, in the any-unit partition and in `s|system|code` and `c|code` (and `c|unit`) |

use crate::registry::{SearchParamDef, SearchParamType};

use super::values::fold;
use super::{Criterion, DateRange, Decimal, Modifier, Prefix, QueryValue, SearchValue};

/// Prefix lengths (in characters of the folded value) indexed for string parameters.
pub const STRING_PREFIX_LENGTHS: [usize; 9] = [1, 2, 3, 4, 5, 6, 8, 12, 16];

/// Which end of a range an ordered entry is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// Sorted by the low end (numbers and quantities only have this side).
    Low,
    /// Sorted by the high end (dates).
    High,
}

/// How wide a date value's range is. Each class has its own partitions, so that a search for a
/// window (`date=ge2024-01-05&date=lt2024-01-06`) reads only the narrow values whose low end lies
/// near the window ([`window`]) instead of intersecting two half-populations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Span {
    /// At most a day: instants, date-times, dates.
    Day,
    /// At most 366 days: months, years, short periods.
    Year,
    /// Longer, or open-ended.
    Wide,
}

impl Span {
    /// Every class, narrowest first.
    pub const ALL: [Span; 3] = [Span::Day, Span::Year, Span::Wide];

    const DAY_MICROS: i64 = 86_400_000_000;

    /// The class of a range.
    pub fn of(range: &DateRange) -> Span {
        let width = range.hi.saturating_sub(range.lo);
        if width < Self::DAY_MICROS {
            Span::Day
        } else if width < 366 * Self::DAY_MICROS {
            Span::Year
        } else {
            Span::Wide
        }
    }

    /// Every range of the class is narrower than this; `None` for [`Span::Wide`].
    pub fn max_width(self) -> Option<i64> {
        match self {
            Span::Day => Some(Self::DAY_MICROS),
            Span::Year => Some(366 * Self::DAY_MICROS),
            Span::Wide => None,
        }
    }

    /// The class's letter in partition keys.
    pub fn code(self) -> char {
        match self {
            Span::Day => 'd',
            Span::Year => 'y',
            Span::Wide => 'w',
        }
    }
}

/// One index term of one resource for one parameter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IndexTerm {
    /// The resource has a value equal to the term.
    Exact(String),
    /// An ordered value: `key` in the partition of `side` (and `span`, for dates; `unit`, for
    /// quantities).
    Ordered {
        /// The sub-partition of a quantity's unit (`s|system|code`, `c|code`); `None` for all.
        unit: Option<String>,
        /// Which end the key is.
        side: Side,
        /// A date's width class; `None` for numbers and quantities.
        span: Option<Span>,
        /// The order-preserving key ([`date_key`], [`Decimal::order_key`]).
        key: String,
    },
}

/// The terms of a parameter's values (distinct, sorted).
pub fn index_terms(param: &SearchParamDef, values: &[SearchValue]) -> Vec<IndexTerm> {
    let mut terms = Vec::new();
    for value in values {
        value_terms(param, value, &mut terms);
    }
    // A value has a few terms: sorting them once is cheaper than a set's inserts.
    terms.sort_unstable();
    terms.dedup();
    terms
}

/// Appends the terms of one value (repeats included).
fn value_terms(param: &SearchParamDef, value: &SearchValue, out: &mut Vec<IndexTerm>) {
    let mut exact = |parts: &[&str]| out.push(IndexTerm::Exact(parts.concat()));
    match value {
        SearchValue::Token { system, code } => {
            exact(&["c|", code]);
            match system {
                Some(system) => exact(&["s|", system, "|", code]),
                None => exact(&["n|", code]),
            }
        }
        SearchValue::IdentifierOfType { type_system, type_code, value } => exact(&["t|", type_system, "|", type_code, "|", value]),
        SearchValue::String(s) => {
            let folded = fold(s);
            for prefix in string_prefixes(&folded) {
                exact(&["p|", prefix]);
            }
        }
        SearchValue::Reference { reference, .. } => {
            exact(&["r|", reference]);
            if param.kind == SearchParamType::Reference {
                if let Some((url, _version)) = reference.split_once('|') {
                    exact(&["r|", url]);
                }
            }
        }
        SearchValue::ReferenceIdentifier { system, value } => {
            exact(&["j|", value]);
            if let Some(system) = system {
                exact(&["i|", system, "|", value]);
            }
        }
        SearchValue::Uri(uri) => exact(&["u|", uri]),
        SearchValue::Date(range) => {
            let span = Some(Span::of(range));
            out.push(IndexTerm::Ordered { unit: None, side: Side::Low, span, key: date_key(range.lo) });
            out.push(IndexTerm::Ordered { unit: None, side: Side::High, span, key: date_key(range.hi) });
        }
        SearchValue::Number(number) => {
            out.push(IndexTerm::Ordered { unit: None, side: Side::Low, span: None, key: number.order_key() });
        }
        SearchValue::Quantity { value, system, code, unit } => {
            let key = value.order_key();
            let mut ordered = |unit: Option<String>| out.push(IndexTerm::Ordered { unit, side: Side::Low, span: None, key: key.clone() });
            ordered(None);
            if let (Some(system), Some(code)) = (system, code) {
                ordered(Some(["s|", system, "|", code].concat()));
            }
            for c in code.iter().chain(unit.iter()) {
                ordered(Some(["c|", c].concat()));
            }
        }
        // Text of tokens is searched by scanning (`:text`); composites through a component.
        SearchValue::TokenText(_) | SearchValue::Composite(_) => {}
    }
}

/// The prefixes of a folded string that are indexed, shortest first.
pub fn string_prefixes(folded: &str) -> impl Iterator<Item = &str> {
    let ends: Vec<usize> = folded.char_indices().map(|(i, c)| i + c.len_utf8()).collect();
    STRING_PREFIX_LENGTHS.iter().filter_map(move |&len| ends.get(len - 1).map(|&end| &folded[..end]))
}

/// The order key of an instant: fixed-width digits of its offset from [`DateRange::MIN`].
pub fn date_key(micros: i64) -> String {
    format!("{:018}", micros.clamp(DateRange::MIN, DateRange::MAX) - DateRange::MIN)
}

/// How to find the candidates of one criterion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The union of the entries of these equality terms, in the partitions of `param`.
    Terms {
        /// The parameter whose entries hold the terms (a composite looks in a component's).
        param: &'static str,
        /// The terms, any of which qualifies.
        terms: Vec<String>,
        /// True when the terms find exactly the matches.
        complete: bool,
    },
    /// The union of key ranges of `param`'s ordered entries (always verified).
    Ranges {
        /// The parameter.
        param: &'static str,
        /// The ranges.
        ranges: Vec<KeyRange>,
    },
    /// Every resource of the type is a candidate.
    Scan,
}

/// An inclusive range of order keys in one ordered partition; `None` ends are open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    /// The quantity unit sub-partition, or `None`.
    pub unit: Option<String>,
    /// Which end the partition is sorted by.
    pub side: Side,
    /// The date width class of the partition; `None` for numbers and quantities.
    pub span: Option<Span>,
    /// The lowest key, inclusive.
    pub from: Option<String>,
    /// The highest key, inclusive.
    pub to: Option<String>,
}

/// The lookup of a criterion on the searched type itself (the caller resolves chains first
/// and gives the reference criteria of each step here). A bare id (`subject=123`) looks in
/// every target type of the parameter.
pub fn lookup(criterion: &Criterion) -> Lookup {
    let param = criterion.param;
    // Parameters without an expression (`_text`, `_content`) have no index entries.
    if param.expression.is_none() {
        return Lookup::Scan;
    }
    let mut terms = Vec::new();
    let mut ranges = Vec::new();
    let mut complete = true;
    let mut term_param = param.code;
    for value in &criterion.values {
        match value_lookup(param, &criterion.modifier, value) {
            ValueLookup::Terms(t, c, p) => {
                terms.extend(t);
                complete &= c;
                if let Some(p) = p {
                    term_param = p;
                }
            }
            ValueLookup::Ranges(r) => ranges.extend(r),
            ValueLookup::Scan => return Lookup::Scan,
        }
    }
    match (terms.is_empty(), ranges.is_empty()) {
        (false, true) => {
            terms.sort();
            terms.dedup();
            Lookup::Terms { param: term_param, terms, complete }
        }
        (true, false) => Lookup::Ranges { param: param.code, ranges },
        _ => Lookup::Scan,
    }
}

enum ValueLookup {
    Terms(Vec<String>, bool, Option<&'static str>),
    Ranges(Vec<KeyRange>),
    Scan,
}

fn value_lookup(param: &'static SearchParamDef, modifier: &Modifier, value: &QueryValue) -> ValueLookup {
    use ValueLookup::{Scan, Terms};
    match (modifier, value) {
        (Modifier::Missing, _) | (_, QueryValue::Missing(_)) => Scan,
        (Modifier::None, QueryValue::Token { system, code: Some(code) }) => match system {
            None => Terms(vec![format!("c|{code}")], true, None),
            Some(s) if s.is_empty() => Terms(vec![format!("n|{code}")], true, None),
            Some(s) => Terms(vec![format!("s|{s}|{code}")], true, None),
        },
        (Modifier::OfType, QueryValue::OfType { type_system, type_code, value }) => {
            Terms(vec![format!("t|{type_system}|{type_code}|{value}")], true, None)
        }
        (Modifier::None | Modifier::Exact, QueryValue::String(s)) => {
            let folded = fold(s);
            match string_prefixes(&folded).last() {
                None => Scan,
                Some(prefix) => {
                    let whole = prefix.len() == folded.len() && *modifier == Modifier::None;
                    Terms(vec![format!("p|{prefix}")], whole, None)
                }
            }
        }
        (Modifier::None | Modifier::Type(_), QueryValue::Reference(reference)) => reference_terms(param, modifier, reference),
        (Modifier::Identifier, QueryValue::Token { system, code: Some(code) }) => match system {
            None => Terms(vec![format!("j|{code}")], true, None),
            Some(s) if !s.is_empty() => Terms(vec![format!("i|{s}|{code}")], true, None),
            Some(_) => Scan,
        },
        (Modifier::None, QueryValue::Uri(uri)) => Terms(vec![format!("u|{uri}")], true, None),
        (Modifier::Above, QueryValue::Uri(uri)) => {
            // Every parent, with and without its trailing slash (`…/ValueSet/123/_history/5` is
            // below `…/ValueSet/123`).
            let mut prefixes: Vec<String> = uri
                .char_indices()
                .filter(|(_, c)| *c == '/')
                .flat_map(|(i, _)| [format!("u|{}", &uri[..i]), format!("u|{}", &uri[..=i])])
                .collect();
            prefixes.push(format!("u|{uri}"));
            Terms(prefixes, false, None)
        }
        (Modifier::None, QueryValue::Date { prefix, value }) => date_ranges(*prefix, value).map_or(Scan, ValueLookup::Ranges),
        (Modifier::None, QueryValue::Number { prefix, value }) => {
            number_range(None, *prefix, value).map_or(Scan, |r| ValueLookup::Ranges(vec![r]))
        }
        (Modifier::None, QueryValue::Quantity { prefix, value, system, code }) => {
            let unit = match (system, code) {
                (Some(s), Some(c)) if !s.is_empty() => Some(format!("s|{s}|{c}")),
                (_, Some(c)) => Some(format!("c|{c}")),
                _ => None,
            };
            number_range(unit, *prefix, value).map_or(Scan, |r| ValueLookup::Ranges(vec![r]))
        }
        (Modifier::None, QueryValue::Composite(parts)) => composite_lookup(param, parts),
        _ => Scan,
    }
}

/// `Type/id`, a bare id (every target type), or a url / canonical.
fn reference_terms(param: &'static SearchParamDef, modifier: &Modifier, reference: &str) -> ValueLookup {
    if let Modifier::Type(target) = modifier {
        if !reference.contains('/') {
            return ValueLookup::Terms(vec![format!("r|{target}/{reference}")], true, None);
        }
        return ValueLookup::Terms(vec![format!("r|{reference}")], false, None);
    }
    if reference.contains('/') || reference.contains(':') {
        return ValueLookup::Terms(vec![format!("r|{reference}")], true, None);
    }
    if param.targets.is_empty() {
        return ValueLookup::Scan;
    }
    ValueLookup::Terms(param.targets.iter().map(|t| format!("r|{t}/{reference}")).collect(), true, None)
}

/// A composite finds candidates through its first component, when that component is a
/// parameter of its own (`code-value-quantity` through `code`).
fn composite_lookup(param: &'static SearchParamDef, parts: &[QueryValue]) -> ValueLookup {
    let Some((_, Some(first))) = param.component_defs().next() else { return ValueLookup::Scan };
    let Some(value) = parts.first() else { return ValueLookup::Scan };
    if !param.base.iter().all(|b| first.base.contains(b)) {
        return ValueLookup::Scan;
    }
    match value_lookup(first, &Modifier::None, value) {
        ValueLookup::Terms(terms, _, _) => ValueLookup::Terms(terms, false, Some(first.code)),
        _ => ValueLookup::Scan,
    }
}

/// A superset of the dates `prefix value` selects (search.html#prefix), as one range of low
/// ends or of high ends, in the partitions of every [`Span`].
fn date_ranges(prefix: Prefix, s: &DateRange) -> Option<Vec<KeyRange>> {
    let (side, from, to) = date_range(prefix, s)?;
    let range = |span| KeyRange { unit: None, side, span: Some(span), from: from.map(date_key), to: to.map(date_key) };
    Some(Span::ALL.into_iter().map(range).collect())
}

/// The side and the bounds (µs, inclusive) of the ends `prefix value` selects.
fn date_range(prefix: Prefix, s: &DateRange) -> Option<(Side, Option<i64>, Option<i64>)> {
    let range = |side, from: Option<i64>, to: Option<i64>| Some((side, from, to));
    match prefix {
        // The target lies within the search range.
        Prefix::Eq => range(Side::Low, Some(s.lo), Some(s.hi)),
        // Something of the target lies after the search range / at or after its start.
        Prefix::Gt => range(Side::High, Some(s.hi.saturating_add(1)), None),
        Prefix::Ge => range(Side::High, Some(s.lo), None),
        // Something of the target lies before the search range / at or before its end.
        Prefix::Lt => range(Side::Low, None, Some(s.lo.saturating_sub(1))),
        Prefix::Le => range(Side::Low, None, Some(s.hi)),
        // The target starts after / ends before the search range.
        Prefix::Sa => range(Side::Low, Some(s.hi.saturating_add(1)), None),
        Prefix::Eb => range(Side::High, None, Some(s.lo.saturating_sub(1))),
        Prefix::Ne | Prefix::Ap => None,
    }
}

/// A superset of the numbers `prefix value` selects: the implicit range of the value, open
/// on the side the prefix asks for; `ap` widened by 10% of the value.
fn number_range(unit: Option<String>, prefix: Prefix, value: &Decimal) -> Option<KeyRange> {
    let (lo, hi) = value.bounds();
    let (from, to) = match prefix {
        Prefix::Eq => (Some(lo), Some(hi)),
        Prefix::Gt | Prefix::Ge | Prefix::Sa => (Some(lo), None),
        Prefix::Lt | Prefix::Le | Prefix::Eb => (None, Some(hi)),
        Prefix::Ap => {
            let tenth = value.abs().scaled(&Decimal::parse("0.1")?)?;
            (lo.sub(&tenth), hi.add(&tenth))
        }
        Prefix::Ne => return None,
    };
    Some(KeyRange { unit, side: Side::Low, span: None, from: from.map(|d| d.order_key()), to: to.map(|d| d.order_key()) })
}

/// The lookup of several criteria on one date parameter that together bound a window from both
/// sides (`date=ge2024-01-05&date=lt2024-01-06`, `sa`/`eb` too), when each names one date: the
/// narrow values whose low end lies within the window widened by their class's width, and the
/// wide values by their low end (or, with no lower bound on it, by their high end). A superset
/// of the matches of all the criteria, always verified. `None` when the criteria do not bound
/// both sides of one parameter.
pub fn window(criteria: &[&Criterion]) -> Option<Lookup> {
    let mut by_param: Vec<(&'static str, Bounds)> = Vec::new();
    for criterion in criteria {
        let (Modifier::None, [QueryValue::Date { prefix, value }], true) =
            (&criterion.modifier, criterion.values.as_slice(), criterion.path.is_empty())
        else {
            continue;
        };
        let code = criterion.param.code;
        let at = match by_param.iter().position(|(c, _)| *c == code) {
            Some(i) => i,
            None => {
                by_param.push((code, Bounds::default()));
                by_param.len() - 1
            }
        };
        let bounds = &mut by_param[at].1;
        match date_range(*prefix, value) {
            Some((Side::Low, from, to)) => {
                bounds.low_from = max_opt(bounds.low_from, from);
                bounds.low_to = min_opt(bounds.low_to, to);
            }
            Some((Side::High, from, to)) => {
                bounds.high_from = max_opt(bounds.high_from, from);
                bounds.high_to = min_opt(bounds.high_to, to);
            }
            None => {}
        }
    }
    by_param.into_iter().find_map(|(param, b)| b.ranges().map(|ranges| Lookup::Ranges { param, ranges }))
}

/// What the criteria require of one parameter's low and high ends (µs, inclusive).
#[derive(Debug, Default, Clone, Copy)]
struct Bounds {
    low_from: Option<i64>,
    low_to: Option<i64>,
    high_from: Option<i64>,
    high_to: Option<i64>,
}

impl Bounds {
    fn ranges(self) -> Option<Vec<KeyRange>> {
        // A value's low end is at most its high end, and more than `width` below it.
        let upper = min_opt(self.low_to, self.high_to)?;
        if self.low_from.is_none() && self.high_from.is_none() {
            return None;
        }
        let key_range = |side, span, from: Option<i64>, to: Option<i64>| KeyRange {
            unit: None,
            side,
            span: Some(span),
            from: from.map(date_key),
            to: to.map(date_key),
        };
        let ranges = Span::ALL.into_iter().map(|span| match span.max_width() {
            Some(width) => key_range(Side::Low, span, max_opt(self.low_from, self.high_from.map(|h| h.saturating_sub(width))), Some(upper)),
            None if self.low_from.is_some() => key_range(Side::Low, span, self.low_from, Some(upper)),
            None => key_range(Side::High, span, self.high_from, self.high_to),
        });
        Some(ranges.collect())
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::search_param;

    fn param(resource_type: &str, code: &str) -> &'static SearchParamDef {
        search_param(resource_type, code).expect("a registry parameter")
    }

    #[test]
    fn token_terms_cover_each_query_form() {
        let code = param("Observation", "code");
        let terms = index_terms(code, &[SearchValue::Token { system: Some("http://loinc.org".into()), code: "8867-4".into() }]);
        assert_eq!(terms, vec![IndexTerm::Exact("c|8867-4".into()), IndexTerm::Exact("s|http://loinc.org|8867-4".into())]);
        let criterion = |system: Option<&str>| Criterion {
            path: vec![],
            param: code,
            modifier: Modifier::None,
            values: vec![QueryValue::Token { system: system.map(String::from), code: Some("8867-4".into()) }],
        };
        assert_eq!(lookup(&criterion(None)), Lookup::Terms { param: "code", terms: vec!["c|8867-4".into()], complete: true });
        assert_eq!(
            lookup(&criterion(Some("http://loinc.org"))),
            Lookup::Terms { param: "code", terms: vec!["s|http://loinc.org|8867-4".into()], complete: true }
        );
        assert_eq!(lookup(&criterion(Some(""))), Lookup::Terms { param: "code", terms: vec!["n|8867-4".into()], complete: true });
    }

    #[test]
    fn string_prefixes_are_indexed_at_fixed_lengths() {
        assert_eq!(string_prefixes("müller").collect::<Vec<_>>(), ["m", "mü", "mül", "müll", "mülle", "müller"]);
        let long: Vec<&str> = string_prefixes("abcdefghijklmnopqrstu").collect();
        assert_eq!(long.iter().map(|p| p.len()).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6, 8, 12, 16]);
        let name = param("Patient", "name");
        let criterion =
            |s: &str| Criterion { path: vec![], param: name, modifier: Modifier::None, values: vec![QueryValue::String(s.into())] };
        assert_eq!(lookup(&criterion("Smi")), Lookup::Terms { param: "name", terms: vec!["p|smi".into()], complete: true });
        // Seven characters: the six-character prefix finds candidates, which are verified.
        assert_eq!(lookup(&criterion("Johnson")), Lookup::Terms { param: "name", terms: vec!["p|johnso".into()], complete: false });
    }

    #[test]
    fn bare_reference_ids_expand_to_every_target_type() {
        let subject = param("Observation", "subject");
        let criterion =
            Criterion { path: vec![], param: subject, modifier: Modifier::None, values: vec![QueryValue::Reference("p1".into())] };
        let Lookup::Terms { terms, complete, .. } = lookup(&criterion) else { panic!("terms") };
        assert!(complete);
        assert!(terms.contains(&"r|Patient/p1".to_string()) && terms.contains(&"r|Group/p1".to_string()));
        let typed = Criterion { modifier: Modifier::Type("Patient".into()), ..criterion };
        assert_eq!(lookup(&typed), Lookup::Terms { param: "subject", terms: vec!["r|Patient/p1".into()], complete: true });
    }

    #[test]
    fn dates_index_both_ends_and_prefixes_pick_a_side() {
        let date = param("Observation", "date");
        let range = DateRange::parse("2024-05").expect("a month");
        let terms = index_terms(date, &[SearchValue::Date(range)]);
        assert_eq!(terms.len(), 2);
        let criterion = |prefix| Criterion {
            path: vec![],
            param: date,
            modifier: Modifier::None,
            values: vec![QueryValue::Date { prefix, value: range }],
        };
        let Lookup::Ranges { ranges, .. } = lookup(&criterion(Prefix::Gt)) else { panic!("ranges") };
        assert_eq!((ranges[0].side, ranges[0].to.clone()), (Side::High, None));
        assert_eq!(ranges[0].from, Some(date_key(range.hi + 1)));
        assert_eq!(lookup(&criterion(Prefix::Ne)), Lookup::Scan);
        assert!(date_key(DateRange::MIN) < date_key(0) && date_key(0) < date_key(DateRange::MAX));
    }

    #[test]
    fn dates_are_classed_by_width() {
        let class = |s: &str| Span::of(&DateRange::parse(s).expect("a date"));
        assert_eq!(class("2024-05-01T10:00:00Z"), Span::Day);
        assert_eq!(class("2024-05-01"), Span::Day);
        assert_eq!(class("2024-05"), Span::Year);
        assert_eq!(class("2024"), Span::Year);
        let period = DateRange::period(DateRange::parse("2020"), DateRange::parse("2023")).expect("a period");
        assert_eq!(Span::of(&period), Span::Wide);
        let open = DateRange::period(DateRange::parse("2020"), None).expect("an open period");
        assert_eq!(Span::of(&open), Span::Wide);
        let terms = index_terms(param("Observation", "date"), &[SearchValue::Date(period)]);
        assert!(terms.iter().all(|t| matches!(t, IndexTerm::Ordered { span: Some(Span::Wide), .. })));
    }

    #[test]
    fn a_window_bounds_the_low_end_of_narrow_values() {
        let date = param("Observation", "date");
        let criterion = |prefix, value: &str| Criterion {
            path: vec![],
            param: date,
            modifier: Modifier::None,
            values: vec![QueryValue::Date { prefix, value: DateRange::parse(value).expect("a date") }],
        };
        let (ge, lt) = (criterion(Prefix::Ge, "2024-01-05"), criterion(Prefix::Lt, "2024-01-06"));
        let Some(Lookup::Ranges { param: code, ranges }) = window(&[&ge, &lt]) else { panic!("a window") };
        assert_eq!(code, "date");
        let start = DateRange::parse("2024-01-05").expect("a day").lo;
        let end = DateRange::parse("2024-01-06").expect("a day").lo - 1;
        let day = 86_400_000_000;
        let expected = [
            (Side::Low, Span::Day, Some(start - day), Some(end)),
            (Side::Low, Span::Year, Some(start - 366 * day), Some(end)),
            (Side::High, Span::Wide, Some(start), None),
        ];
        let got: Vec<_> = ranges.iter().map(|r| (r.side, r.span.expect("a span"), r.from.clone(), r.to.clone())).collect();
        let expected: Vec<_> = expected.iter().map(|(side, span, f, t)| (*side, *span, f.map(date_key), t.map(date_key))).collect();
        assert_eq!(got, expected);
        // One side only, or a value list, is no window.
        assert_eq!(window(&[&ge]), None);
        let mut listed = criterion(Prefix::Lt, "2024-01-06");
        listed.values.push(listed.values[0].clone());
        assert_eq!(window(&[&ge, &listed]), None);
        // `sa` bounds the low end itself, wide values included.
        let sa = criterion(Prefix::Sa, "2024-01-04");
        let Some(Lookup::Ranges { ranges, .. }) = window(&[&sa, &lt]) else { panic!("a window") };
        assert!(ranges.iter().all(|r| r.side == Side::Low && r.to == Some(date_key(end))));
    }

    #[test]
    fn quantities_are_indexed_per_unit() {
        let value = param("Observation", "value-quantity");
        let q = SearchValue::Quantity {
            value: Decimal::parse("5.4").expect("5.4"),
            system: Some("http://unitsofmeasure.org".into()),
            code: Some("mg".into()),
            unit: Some("mg".into()),
        };
        let units: Vec<Option<String>> = index_terms(value, &[q])
            .into_iter()
            .filter_map(|t| match t {
                IndexTerm::Ordered { unit, .. } => Some(unit),
                _ => None,
            })
            .collect();
        assert_eq!(units, vec![None, Some("c|mg".into()), Some("s|http://unitsofmeasure.org|mg".into())]);
    }

    #[test]
    fn uri_above_looks_up_every_parent_with_and_without_its_slash() {
        let url = param("ValueSet", "url");
        let criterion = Criterion {
            path: vec![],
            param: url,
            modifier: Modifier::Above,
            values: vec![QueryValue::Uri("http://acme.org/fhir/ValueSet/123/_history/5".into())],
        };
        let Lookup::Terms { terms, complete, .. } = lookup(&criterion) else { panic!("terms") };
        assert!(!complete);
        for parent in ["u|http://acme.org/fhir/ValueSet/123", "u|http://acme.org/fhir/ValueSet/123/", "u|http://acme.org/fhir"] {
            assert!(terms.contains(&parent.to_string()), "{parent}");
        }
    }

    #[test]
    fn text_and_content_scan() {
        for code in ["_text", "_content"] {
            let criterion = Criterion {
                path: vec![],
                param: param("Patient", code),
                modifier: Modifier::None,
                values: vec![QueryValue::String("zebra".into())],
            };
            assert_eq!(lookup(&criterion), Lookup::Scan, "{code}");
        }
    }

    #[test]
    fn unindexable_criteria_scan() {
        let gender = param("Patient", "gender");
        let not = Criterion {
            path: vec![],
            param: gender,
            modifier: Modifier::Not,
            values: vec![QueryValue::Token { system: None, code: Some("male".into()) }],
        };
        assert_eq!(lookup(&not), Lookup::Scan);
        let missing = Criterion { path: vec![], param: gender, modifier: Modifier::Missing, values: vec![QueryValue::Missing(true)] };
        assert_eq!(lookup(&missing), Lookup::Scan);
    }
}
