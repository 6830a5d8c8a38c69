//! The FHIR R4 registry: resource types, datatypes, element definitions, search
//! parameters and compartments.
//!
//! Every table is generated from the official R4 (4.0.1) definitions by
//! `shared/fhirlake-fhir/generator` into `src/codegen/` and compiled in as
//! `&'static` data: nothing is parsed at start-up. Lookups are binary searches
//! over sorted tables, or short linear scans over one element's children.

use crate::codegen::{compartments, search, types};

/// What kind of type a [`TypeDef`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeKind {
    /// A resource type (including the abstract `Resource` and `DomainResource`).
    Resource,
    /// A complex datatype such as `HumanName` or `Quantity` (including the abstract `Element`).
    Complex,
    /// A primitive datatype such as `string`, `date` or `positiveInt`.
    Primitive,
}

/// How a primitive's value is represented in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    /// A JSON `true` or `false`.
    Boolean,
    /// A JSON number without fraction or exponent, in the 32-bit signed range.
    Integer,
    /// Any JSON number.
    Decimal,
    /// A JSON string.
    String,
}

/// The value rules of a primitive datatype.
#[derive(Debug)]
pub struct PrimitiveDef {
    /// The JSON representation (inherited: `positiveInt` is an integer).
    pub json: JsonKind,
    /// The spec's regular expression for the value's lexical form (implicitly anchored), if any.
    pub regex: Option<&'static str>,
    /// Index of this primitive among all primitives, for per-primitive caches.
    pub(crate) slot: usize,
}

/// A resource type or datatype.
#[derive(Debug)]
pub struct TypeDef {
    /// The type name (`Patient`, `HumanName`, `dateTime`).
    pub name: &'static str,
    /// Resource, complex datatype or primitive datatype.
    pub kind: TypeKind,
    /// Whether the type is abstract (`Resource`, `DomainResource`, `Element`, `BackboneElement`).
    pub is_abstract: bool,
    /// The name of the type this one specialises (`DomainResource` for `Patient`).
    pub base: Option<&'static str>,
    /// The type's direct child elements, in definition order, inherited ones included.
    /// For a primitive these are `id` and `extension` (the value itself is not an element).
    pub elements: &'static [ElementDef],
    /// Value rules, for primitive types only.
    pub primitive: Option<PrimitiveDef>,
}

/// One element of a type: a JSON property of the object that represents it.
pub struct ElementDef {
    /// The full path (`Patient.contact.name`, `Observation.value[x]`).
    pub path: &'static str,
    /// The JSON property name; for a choice element, the stem (`value` for `value[x]`).
    pub name: &'static str,
    /// Minimum cardinality.
    pub min: u32,
    /// Maximum cardinality; `None` means unbounded (`*`).
    pub max: Option<u32>,
    /// The allowed types (`string`, `Reference`, `BackboneElement`, ...); several for a
    /// choice element, none for a `content_reference` element.
    pub types: &'static [&'static TypeDef],
    /// Whether this is a choice element (`value[x]`), whose JSON name is the stem followed
    /// by the capitalised type code (`valueQuantity`).
    pub choice: bool,
    /// The element whose definition this one reuses (`#Questionnaire.item`).
    pub content_reference: Option<&'static str>,
    /// Child elements of a backbone element, or of the element named by `content_reference`.
    /// Empty for elements whose children come from their datatype.
    pub children: &'static [ElementDef],
    /// For `Reference` and `canonical` elements, the allowed target types (`Resource` means any).
    pub targets: &'static [&'static str],
    /// For `code` elements with a required binding whose codes the definitions enumerate.
    pub binding: Option<&'static ValueSetDef>,
    /// Whether the element is a modifier (`isModifier`).
    pub modifier: bool,
    /// Whether the element is part of the summary view (`isSummary`).
    pub summary: bool,
}

/// The codes of a value set bound with required strength.
#[derive(Debug)]
pub struct ValueSetDef {
    /// The value set's canonical url.
    pub url: &'static str,
    /// Its codes, sorted.
    pub codes: &'static [&'static str],
}

/// The type of a search parameter (`SearchParameter.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchParamType {
    /// `number`
    Number,
    /// `date`
    Date,
    /// `string`
    String,
    /// `token`
    Token,
    /// `reference`
    Reference,
    /// `composite`
    Composite,
    /// `quantity`
    Quantity,
    /// `uri`
    Uri,
    /// `special`
    Special,
}

impl SearchParamType {
    /// The FHIR code (`token`, `date`, ...).
    pub fn code(self) -> &'static str {
        match self {
            SearchParamType::Number => "number",
            SearchParamType::Date => "date",
            SearchParamType::String => "string",
            SearchParamType::Token => "token",
            SearchParamType::Reference => "reference",
            SearchParamType::Composite => "composite",
            SearchParamType::Quantity => "quantity",
            SearchParamType::Uri => "uri",
            SearchParamType::Special => "special",
        }
    }
}

/// One component of a composite search parameter.
#[derive(Debug)]
pub struct SearchParamComponent {
    /// The url of the search parameter that defines the component's type.
    pub definition: &'static str,
    /// The FHIRPath expression of the component, relative to each result of the composite's expression.
    pub expression: &'static str,
}

/// A search parameter.
#[derive(Debug)]
pub struct SearchParamDef {
    /// The definition's id (`Observation-code`, `clinical-patient`).
    pub id: &'static str,
    /// The canonical url.
    pub url: &'static str,
    /// The code used in query strings (`birthdate`, `_id`).
    pub code: &'static str,
    /// The parameter's type.
    pub kind: SearchParamType,
    /// The FHIRPath expression over all bases; `None` for `_text`, `_content` and `_query`.
    pub expression: Option<&'static str>,
    /// The resource types the parameter applies to (`Resource` applies to all).
    pub base: &'static [&'static str],
    /// For multi-base parameters, the part of `expression` for each base (parallel to `base`);
    /// empty when there is a single base. Read it through [`SearchParamDef::expression_for`].
    pub base_expressions: &'static [&'static str],
    /// For reference parameters, the resource types a reference may point to.
    pub targets: &'static [&'static str],
    /// The modifiers allowed, when the definition restricts them.
    pub modifiers: &'static [&'static str],
    /// The comparators allowed (`eq`, `gt`, ...).
    pub comparators: &'static [&'static str],
    /// The chained names allowed, when the definition lists them.
    pub chain: &'static [&'static str],
    /// Whether several values may be OR-ed (`multipleOr`), when stated.
    pub multiple_or: Option<bool>,
    /// Whether the parameter may repeat (`multipleAnd`), when stated.
    pub multiple_and: Option<bool>,
    /// For composite parameters, the components in order.
    pub components: &'static [SearchParamComponent],
}

/// Two definitions are the same parameter when their canonical urls are equal.
impl PartialEq for SearchParamDef {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url
    }
}

impl SearchParamDef {
    /// The expression that extracts this parameter's values from a resource of `resource_type`:
    /// for a parameter shared by several types (`clinical-patient`), only the union members for
    /// that type (`Observation.subject.where(resolve() is Patient)`).
    pub fn expression_for(&self, resource_type: &str) -> Option<&'static str> {
        if let Some(i) = self.base.iter().position(|b| *b == resource_type) {
            if let Some(expr) = self.base_expressions.get(i) {
                return Some(expr);
            }
        }
        self.expression
    }

    /// The definitions of a composite parameter's components, in order.
    pub fn component_defs(&self) -> impl Iterator<Item = (&'static SearchParamComponent, Option<&'static SearchParamDef>)> {
        self.components.iter().map(|c| (c, search_param_by_url(c.definition)))
    }
}

impl TypeDef {
    /// The direct child element whose JSON property name is `name` (see [`find_element`]).
    pub fn element(&self, name: &str) -> Option<ElementMatch> {
        find_element(self.elements, name)
    }

    /// Whether this is a primitive datatype.
    pub fn is_primitive(&self) -> bool {
        self.kind == TypeKind::Primitive
    }
}

impl ElementDef {
    /// Whether the element repeats, i.e. is represented as a JSON array (`max != 1`).
    pub fn is_array(&self) -> bool {
        self.max != Some(1)
    }

    /// Whether the element's children are defined inline (a backbone element) or by
    /// `content_reference`, rather than by a datatype.
    pub fn has_inline_children(&self) -> bool {
        !self.children.is_empty()
    }

    /// The maximum cardinality as written in the spec (`1`, `*`).
    pub fn max_str(&self) -> std::borrow::Cow<'static, str> {
        match self.max {
            None => "*".into(),
            Some(1) => "1".into(),
            Some(n) => n.to_string().into(),
        }
    }

    /// The type a JSON property name selects: for a choice element, the type whose capitalised
    /// code follows the stem (`valueQuantity` -> `Quantity`); otherwise the single type.
    pub fn type_for(&self, json_name: &str) -> Option<&'static TypeDef> {
        if !self.choice {
            return self.types.first().copied();
        }
        let suffix = json_name.strip_prefix(self.name)?;
        self.types.iter().copied().find(|t| capitalised_eq(t.name, suffix))
    }

    /// The type codes, as the spec writes them (`["Quantity", "CodeableConcept", ...]`).
    pub fn type_codes(&self) -> impl ExactSizeIterator<Item = &'static str> {
        self.types.iter().map(|t| t.name)
    }
}

// Manual, because types and children link back (Extension.extension, Questionnaire.item.item).
impl std::fmt::Debug for ElementDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElementDef")
            .field("path", &self.path)
            .field("min", &self.min)
            .field("max", &self.max_str())
            .field("types", &self.type_codes().collect::<Vec<_>>())
            .field("content_reference", &self.content_reference)
            .field("children", &self.children.len())
            .field("targets", &self.targets)
            .field("binding", &self.binding.map(|b| b.url))
            .field("modifier", &self.modifier)
            .field("summary", &self.summary)
            .finish()
    }
}

/// An element found by JSON property name, with the type the name selects.
#[derive(Debug, Clone, Copy)]
pub struct ElementMatch {
    /// The element.
    pub element: &'static ElementDef,
    /// The selected type: the choice type for `valueQuantity`, the only type otherwise;
    /// `None` for backbone and `content_reference` elements.
    pub type_def: Option<&'static TypeDef>,
}

/// Finds the element among `elements` that JSON property `name` stands for, resolving choice
/// elements (`deceasedBoolean` -> `deceased[x]` as `boolean`).
pub fn find_element(elements: &'static [ElementDef], name: &str) -> Option<ElementMatch> {
    for element in elements {
        // Cheap first-byte test before comparing whole names: this runs for every property.
        if element.name.as_bytes().first() != name.as_bytes().first() {
            continue;
        }
        if !element.choice {
            if element.name == name {
                let type_def = if element.has_inline_children() { None } else { element.types.first().copied() };
                return Some(ElementMatch { element, type_def });
            }
        } else if name.len() > element.name.len() && name.starts_with(element.name) {
            if let Some(t) = element.type_for(name) {
                return Some(ElementMatch { element, type_def: Some(t) });
            }
        }
    }
    None
}

/// `type_code` with its first letter upper-cased equals `s`.
fn capitalised_eq(type_code: &str, s: &str) -> bool {
    let (t, s) = (type_code.as_bytes(), s.as_bytes());
    t.len() == s.len() && !t.is_empty() && t[0].to_ascii_uppercase() == s[0] && t[1..] == s[1..]
}

/// The FHIR version of the registry: `4.0.1`.
pub fn fhir_version() -> &'static str {
    crate::codegen::FHIR_VERSION
}

/// The concrete resource types, sorted (`Resource` and `DomainResource` are not included).
pub fn resource_types() -> &'static [&'static str] {
    &types::RESOURCE_TYPES
}

/// Whether `name` is a concrete resource type.
pub fn is_resource_type(name: &str) -> bool {
    types::RESOURCE_TYPES.binary_search(&name).is_ok()
}

/// Every type: resources (abstract ones included), complex and primitive datatypes, sorted by name.
pub fn types() -> &'static [TypeDef] {
    &types::TYPES
}

/// A resource type or datatype by name (`Patient`, `HumanName`, `dateTime`, `Resource`).
pub fn type_def(name: &str) -> Option<&'static TypeDef> {
    let i = types::TYPES.binary_search_by(|t| t.name.cmp(name)).ok()?;
    types::TYPES.get(i)
}

/// The element at a dotted path (`Patient.contact.name`, `Observation.value[x]`,
/// `Questionnaire.item.item.text`), following backbone elements and content references.
pub fn element_by_path(path: &str) -> Option<&'static ElementDef> {
    let mut parts = path.split('.');
    let mut elements = type_def(parts.next()?)?.elements;
    let mut found = None;
    for part in parts {
        let name = part.strip_suffix("[x]").unwrap_or(part);
        let element = elements.iter().find(|e| e.name == name && e.choice == part.ends_with("[x]"))?;
        elements = if element.has_inline_children() {
            element.children
        } else {
            match element.types {
                [single] => single.elements,
                _ => &[],
            }
        };
        found = Some(element);
    }
    found
}

/// Every search parameter, sorted by url.
pub fn all_search_params() -> &'static [SearchParamDef] {
    &search::SEARCH_PARAMS
}

/// The indices of the parameters that apply to `resource_type`, sorted by code.
fn search_index(resource_type: &str) -> &'static [u16] {
    match search::BY_TYPE.binary_search_by(|(t, _)| t.cmp(&resource_type)) {
        Ok(i) => search::BY_TYPE[i].1,
        Err(_) => &[],
    }
}

/// The search parameters that apply to `resource_type`, sorted by code, including those
/// inherited from `Resource` and `DomainResource` (`_id`, `_lastUpdated`, `_text`, ...).
/// Empty for an unknown type.
pub fn search_params(resource_type: &str) -> impl ExactSizeIterator<Item = &'static SearchParamDef> {
    // The generator only emits indices into SEARCH_PARAMS.
    search_index(resource_type).iter().map(|&i| &search::SEARCH_PARAMS[usize::from(i)])
}

/// The search parameter `code` of `resource_type` (`birthdate` of `Patient`, `_id` of anything).
pub fn search_param(resource_type: &str, code: &str) -> Option<&'static SearchParamDef> {
    let index = search_index(resource_type);
    let i = index.binary_search_by(|&i| search::SEARCH_PARAMS.get(usize::from(i)).map_or("", |p| p.code).cmp(code)).ok()?;
    search::SEARCH_PARAMS.get(usize::from(index[i]))
}

/// A search parameter by canonical url (as named by composite components).
pub fn search_param_by_url(url: &str) -> Option<&'static SearchParamDef> {
    let i = search::SEARCH_PARAMS.binary_search_by(|p| p.url.cmp(url)).ok()?;
    search::SEARCH_PARAMS.get(i)
}

/// The compartments defined by the spec: `Device`, `Encounter`, `Patient`, `Practitioner`, `RelatedPerson`.
pub fn compartment_types() -> impl Iterator<Item = &'static str> {
    compartments::COMPARTMENTS.iter().map(|(c, _)| *c)
}

/// The search parameters that link a resource of `resource_type` to a compartment of type
/// `compartment`; empty when resources of that type are never in such a compartment.
pub fn compartment_params(compartment: &str, resource_type: &str) -> &'static [&'static str] {
    let Ok(c) = compartments::COMPARTMENTS.binary_search_by(|(c, _)| c.cmp(&compartment)) else {
        return &[];
    };
    let members = compartments::COMPARTMENTS[c].1;
    match members.binary_search_by(|(t, _)| t.cmp(&resource_type)) {
        Ok(i) => members[i].1,
        Err(_) => &[],
    }
}

/// The search parameters that link a resource of `resource_type` to a Patient compartment
/// (`Observation` -> `subject`, `performer`); empty when it is never in one.
pub fn patient_compartment_params(resource_type: &str) -> &'static [&'static str] {
    compartment_params("Patient", resource_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_and_counts_match_r4() {
        assert_eq!(fhir_version(), "4.0.1");
        // R4 4.0.1 defines 146 concrete resource types (the base CapabilityStatement lists
        // 145 of them: all but Parameters).
        assert_eq!(resource_types().len(), 146);
        assert!(resource_types().windows(2).all(|w| w[0] < w[1]));
        // 20 primitives, 39 complex datatypes plus the abstract Element and BackboneElement.
        assert_eq!(types().iter().filter(|t| t.kind == TypeKind::Primitive).count(), 20);
        assert_eq!(types().iter().filter(|t| t.kind == TypeKind::Complex).count(), 41);
        assert_eq!(types().iter().filter(|t| t.kind == TypeKind::Resource).count(), 148);
        assert!(types().windows(2).all(|w| w[0].name < w[1].name));
        // search-parameters.json of R4 4.0.1 holds 1,377 parameters.
        assert_eq!(all_search_params().len(), 1377);
        assert!(compartment_types().eq(["Device", "Encounter", "Patient", "Practitioner", "RelatedPerson"]));
    }

    #[test]
    fn resource_types_exclude_abstract_bases_and_non_r4_types() {
        assert!(is_resource_type("Patient"));
        assert!(is_resource_type("Parameters"));
        assert!(!is_resource_type("Resource"));
        assert!(!is_resource_type("DomainResource"));
        assert!(!is_resource_type("SubscriptionStatus"));
        assert!(!is_resource_type("patient"));
        assert!(!is_resource_type("HumanName"));
        assert_eq!(type_def("Resource").map(|t| t.is_abstract), Some(true));
        assert_eq!(type_def("Patient").and_then(|t| t.base), Some("DomainResource"));
    }

    #[test]
    fn elements_carry_cardinality_types_and_choices() {
        let patient = type_def("Patient").expect("Patient");
        let id = patient.element("id").expect("id");
        assert_eq!(id.type_def.map(|t| t.name), Some("id"));
        let name = patient.element("name").expect("name").element;
        assert_eq!((name.min, name.max), (0, None));
        assert!(name.type_codes().eq(["HumanName"]));
        assert!(name.is_array());
        let deceased = patient.element("deceasedDateTime").expect("deceased");
        assert_eq!(deceased.element.path, "Patient.deceased[x]");
        assert_eq!(deceased.type_def.map(|t| t.name), Some("dateTime"));
        assert!(patient.element("deceased").is_none());
        assert!(patient.element("deceasedString").is_none());
        let gender = patient.element("gender").expect("gender").element;
        let codes = gender.binding.expect("required binding").codes;
        assert_eq!(codes, &["female", "male", "other", "unknown"]);

        let observation = type_def("Observation").expect("Observation");
        let status = observation.element("status").expect("status").element;
        assert_eq!((status.min, status.max), (1, Some(1)));
        assert!(status.modifier && status.summary);
        assert!(status.binding.expect("binding").codes.contains(&"final"));
        let value = observation.element("valueQuantity").expect("valueQuantity");
        assert_eq!(value.type_def.map(|t| t.name), Some("Quantity"));
        assert_eq!(value.element.types.len(), 11);
        let subject = observation.element("subject").expect("subject").element;
        assert_eq!(subject.targets, &["Patient", "Group", "Device", "Location"]);
        let component = observation.element("component").expect("component").element;
        assert!(component.has_inline_children());
        assert!(component.children.iter().any(|e| e.path == "Observation.component.code" && e.min == 1));
    }

    #[test]
    fn content_references_resolve_to_the_referenced_children() {
        let item = element_by_path("Questionnaire.item.item").expect("item.item");
        assert_eq!(item.content_reference, Some("#Questionnaire.item"));
        let outer = element_by_path("Questionnaire.item").expect("item");
        assert!(std::ptr::eq(item.children, outer.children));
        assert_eq!(element_by_path("Questionnaire.item.item.item.linkId").map(|e| e.min), Some(1));
        assert!(element_by_path("Patient.contact.name").is_some_and(|e| e.type_codes().eq(["HumanName"])));
        assert!(element_by_path("Patient.name.given").is_some_and(|e| e.type_codes().eq(["string"])));
        assert!(format!("{item:?}").contains("Questionnaire.item.item"));
        assert!(element_by_path("Observation.value[x]").is_some_and(|e| e.choice));
        assert!(element_by_path("Patient.nope").is_none());
        assert!(element_by_path("Nope.id").is_none());
    }

    #[test]
    fn primitives_carry_json_kind_and_regex() {
        let kind = |n: &str| type_def(n).and_then(|t| t.primitive.as_ref()).map(|p| p.json);
        assert_eq!(kind("boolean"), Some(JsonKind::Boolean));
        assert_eq!(kind("positiveInt"), Some(JsonKind::Integer));
        assert_eq!(kind("unsignedInt"), Some(JsonKind::Integer));
        assert_eq!(kind("decimal"), Some(JsonKind::Decimal));
        assert_eq!(kind("date"), Some(JsonKind::String));
        assert_eq!(kind("HumanName"), None);
        let regex = |n: &str| type_def(n).and_then(|t| t.primitive.as_ref()).and_then(|p| p.regex);
        assert_eq!(regex("id"), Some("[A-Za-z0-9\\-\\.]{1,64}"));
        assert_eq!(regex("xhtml"), None);
    }

    #[test]
    fn search_parameters_have_types_expressions_and_targets() {
        let birthdate = search_param("Patient", "birthdate").expect("birthdate");
        assert_eq!(birthdate.kind, SearchParamType::Date);
        assert_eq!(birthdate.expression_for("Patient"), Some("Patient.birthDate"));
        assert_eq!(birthdate.expression_for("Person"), Some("Person.birthDate"));
        assert!(birthdate.comparators.contains(&"ge"));

        let code = search_param("Observation", "code").expect("code");
        assert_eq!(code.kind, SearchParamType::Token);
        assert_eq!(code.expression_for("Observation"), Some("Observation.code"));

        let subject = search_param("Observation", "subject").expect("subject");
        assert_eq!(subject.kind, SearchParamType::Reference);
        assert_eq!(subject.expression, Some("Observation.subject"));
        assert_eq!(subject.targets, &["Group", "Device", "Patient", "Location"]);

        let patient = search_param("Observation", "patient").expect("patient");
        assert_eq!(patient.id, "clinical-patient");
        assert_eq!(patient.expression_for("Observation"), Some("Observation.subject.where(resolve() is Patient)"));

        let cvq = search_param("Observation", "code-value-quantity").expect("code-value-quantity");
        assert_eq!(cvq.kind, SearchParamType::Composite);
        let parts: Vec<_> = cvq.component_defs().map(|(c, d)| (c.expression, d.map(|d| d.kind))).collect();
        assert_eq!(parts, [("code", Some(SearchParamType::Token)), ("value.ofType(Quantity)", Some(SearchParamType::Quantity))]);
    }

    #[test]
    fn search_parameters_include_the_inherited_ones() {
        let id = search_param("Patient", "_id").expect("_id");
        assert_eq!((id.kind, id.expression), (SearchParamType::Token, Some("Resource.id")));
        assert_eq!(search_param("Bundle", "_lastUpdated").map(|p| p.kind), Some(SearchParamType::Date));
        assert!(search_param("Patient", "_text").is_some());
        // Bundle is not a DomainResource: no _text.
        assert!(search_param("Bundle", "_text").is_none());
        assert!(search_param("Patient", "nope").is_none());
        assert!(search_param("Nope", "_id").is_none());
        let codes: Vec<_> = search_params("Patient").map(|p| p.code).collect();
        assert!(codes.windows(2).all(|w| w[0] < w[1]));
        assert!(codes.contains(&"name") && codes.contains(&"_lastUpdated") && codes.contains(&"general-practitioner"));
        assert_eq!(search_params("Nope").len(), 0);
        // Every resource type has at least the Resource parameters.
        assert!(resource_types().iter().all(|t| search_param(t, "_id").is_some()));
    }

    #[test]
    fn patient_compartment_comes_from_the_definition() {
        assert_eq!(patient_compartment_params("Observation"), &["subject", "performer"]);
        assert_eq!(patient_compartment_params("Patient"), &["link"]);
        assert_eq!(patient_compartment_params("Encounter"), &["patient"]);
        assert!(patient_compartment_params("Organization").is_empty());
        assert!(patient_compartment_params("Nope").is_empty());
        assert_eq!(compartment_params("Encounter", "Observation"), &["encounter"]);
        assert!(compartment_params("Nope", "Observation").is_empty());
        // Every compartment parameter exists as a search parameter of that type.
        for c in compartment_types() {
            for t in resource_types() {
                for code in compartment_params(c, t) {
                    assert!(search_param(t, code).is_some() || *code == "{def}", "{c}: {t}.{code}");
                }
            }
        }
    }
}
