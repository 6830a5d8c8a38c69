//! FHIR search over the index entries of [`crate::index`]: plan, candidates, verification,
//! paging, sorting, chains, `_has` and includes.
//!
//! A search turns each criterion into a *filter*. Chains are resolved first: `subject:Patient.
//! name=x` searches Patients named x and becomes `subject=Patient/a,Patient/b,…`; `_has` runs
//! the inner search and becomes a set of ids. One filter *drives*: its index entries are read
//! in id order (equality terms and the type listing stream page by page; ordered ranges and id
//! sets are collected first). Each candidate entry is checked against its version (it counts
//! only when that version is the latest and was stored by the same write) and the resource is
//! then verified against every filter with the matcher of `fhirlake_fhir::search`, except the
//! driver when its lookup is complete. The matcher, not the index, defines a match.
//!
//! Paging: unsorted results come in id order and the cursor is the last id returned, so pages
//! are stable under concurrent writes. Sorted results are collected, sorted and paged by
//! position, anchored on the last id.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use base64::Engine;
use fhirlake_fhir::registry::{self, SearchParamDef, SearchParamType};
use fhirlake_fhir::search::terms::{self, Lookup};
use fhirlake_fhir::search::{matcher, values, Criterion, Include, Link, Modifier, QueryValue, SearchRequest, SearchValue, SortKey};
use fhirlake_ports::{Item, Key, Query, SkRange};
use serde_json::Value;

use crate::crypto::IndexKey;
use crate::datastores::ActiveDatastore;
use crate::index::{self, EntryRef};
use crate::layout;
use crate::resources::{ResourceService, StoredVersion};
use crate::{Backends, CoreError, CoreResult};

/// Entries read from one index partition per query.
const ENTRY_PAGE: usize = 200;
/// Entries read from an ordered partition per query when a range is collected.
const RANGE_PAGE: usize = 1000;
/// Most resources an `_include:iterate` / `_revinclude:iterate` adds to one page.
const MAX_INCLUDED: usize = 5000;
/// Most rounds of `:iterate`.
const MAX_ITERATIONS: usize = 8;
/// The driver rank of ordered ranges (below equality terms, above scans).
const RANGE_RANK: u8 = 3;

/// One page of search results.
#[derive(Debug, Clone, Default)]
pub struct SearchPage {
    /// The matches, in result order.
    pub matches: Vec<StoredVersion>,
    /// Resources added by `_include` / `_revinclude` (search mode `include`).
    pub included: Vec<StoredVersion>,
    /// The cursor of the next page, when there is one.
    pub next_cursor: Option<String>,
    /// The number of matches, when asked for or known for free.
    pub total: Option<u64>,
}

/// What a search is confined to besides its criteria.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// A compartment: `("Patient", "123")` searches `Patient/123/{type}`.
    pub compartment: Option<(String, String)>,
}

/// Runs searches.
#[derive(Clone)]
pub struct SearchService {
    backends: Backends,
    resources: ResourceService,
}

/// One requirement on a resource.
#[derive(Debug, Clone)]
enum Filter {
    /// A criterion on the type's own parameter.
    Criterion(Criterion),
    /// At least one of these criteria (a compartment's parameters).
    AnyOf(Vec<Criterion>),
    /// The id is one of these (a resolved `_has`).
    Ids(BTreeSet<String>),
}

/// Where candidates come from.
enum Driver {
    /// Index partitions whose entries are merged in id order.
    Stream(MergedEntries),
    /// Entries collected up front, by id.
    Collected(VecDeque<EntryRef>),
    /// Ids whose latest versions are the candidates.
    Ids(VecDeque<String>),
}

impl SearchService {
    /// Builds the service.
    pub fn new(backends: Backends, resources: ResourceService) -> Self {
        SearchService { backends, resources }
    }

    /// One page of the search `request`, at most `count` matches: on its resource type, or on
    /// every type (or those of `_type`) for a system search.
    pub async fn search(&self, ds: &ActiveDatastore, request: &SearchRequest, scope: &Scope, count: usize) -> CoreResult<SearchPage> {
        let Some(resource_type) = request.resource_type.as_deref() else {
            return self.search_system(ds, request, count).await;
        };
        let mut filters = Vec::new();
        if let Some((compartment, id)) = &scope.compartment {
            match compartment_filter(compartment, id, resource_type) {
                Some(filter) => filters.push(filter),
                None => return Ok(SearchPage { total: Some(0), ..SearchPage::default() }),
            }
        }
        let Some(resolved) = self.resolve(ds, resource_type, &request.criteria).await? else {
            return Ok(SearchPage { total: Some(0), ..SearchPage::default() });
        };
        filters.extend(resolved);
        if count == 0 {
            // `_count=0` and `_summary=count`: the number of matches only.
            let total = self.all_matches(ds, resource_type, &filters).await?.len() as u64;
            return Ok(SearchPage { total: Some(total), ..SearchPage::default() });
        }
        let mut page = if request.result.sort.is_empty() {
            self.page_by_id(ds, resource_type, &filters, count, request.result.cursor.as_deref()).await?
        } else {
            self.page_sorted(ds, resource_type, &filters, &request.result.sort, count, request.result.cursor.as_deref()).await?
        };
        if request.result.total.is_some_and(|t| t != fhirlake_fhir::search::TotalMode::None) && page.total.is_none() {
            page.total = Some(self.all_matches(ds, resource_type, &filters).await?.len() as u64);
        }
        page.included = self.includes(ds, &page.matches, &request.result.include, &request.result.revinclude).await?;
        Ok(page)
    }

    /// `GET [base]?…`: the criteria (parameters every resource has) on each type of `_type`, or
    /// on every type, in (type, id) order; with `_sort`, all matches sorted.
    async fn search_system(&self, ds: &ActiveDatastore, request: &SearchRequest, count: usize) -> CoreResult<SearchPage> {
        let stored = self.resources.stored_types(ds).await?;
        let mut searched: Vec<(&'static str, Vec<Filter>)> = Vec::new();
        for &resource_type in registry::resource_types() {
            if !stored.iter().any(|t| t == resource_type) {
                continue;
            }
            if !request.result.types.is_empty() && !request.result.types.iter().any(|t| t == resource_type) {
                continue;
            }
            let criteria: Option<Vec<Criterion>> = request.criteria.iter().map(|c| retarget(c, resource_type)).collect();
            let Some(criteria) = criteria else { continue };
            if let Some(filters) = self.resolve(ds, resource_type, &criteria).await? {
                searched.push((resource_type, filters));
            }
        }
        if count == 0 {
            return Ok(SearchPage { total: Some(self.system_matches(ds, &searched).await?.len() as u64), ..SearchPage::default() });
        }
        let sort = &request.result.sort;
        let mut page = if sort.is_empty() {
            self.system_page(ds, &searched, count, request.result.cursor.as_deref()).await?
        } else {
            let mut keyed = Vec::new();
            for version in self.system_matches(ds, &searched).await? {
                let body = parse_body(&version)?.unwrap_or(Value::Null);
                let keys: Vec<Option<SortValue>> = sort.iter().map(|k| sort_value(&version.resource_type, k, &body)).collect();
                keyed.push((keys, version));
            }
            keyed.sort_by(|(a, va), (b, vb)| compare_sort(sort, a, b).then_with(|| everything_key(va).cmp(&everything_key(vb))));
            positioned_page(keyed.into_iter().map(|(_, v)| v).collect(), everything_key, count, request.result.cursor.as_deref())?
        };
        if request.result.total.is_some_and(|t| t != fhirlake_fhir::search::TotalMode::None) && page.total.is_none() {
            page.total = Some(self.system_matches(ds, &searched).await?.len() as u64);
        }
        page.included = self.includes(ds, &page.matches, &request.result.include, &request.result.revinclude).await?;
        Ok(page)
    }

    /// Every match of a system search, in (type, id) order.
    async fn system_matches(&self, ds: &ActiveDatastore, searched: &[(&'static str, Vec<Filter>)]) -> CoreResult<Vec<StoredVersion>> {
        let mut all = Vec::new();
        for (resource_type, filters) in searched {
            all.extend(self.all_matches(ds, resource_type, filters).await?);
        }
        Ok(all)
    }

    /// One page of a system search in (type, id) order after the cursor (`Type/id`).
    async fn system_page(
        &self,
        ds: &ActiveDatastore,
        searched: &[(&'static str, Vec<Filter>)],
        count: usize,
        cursor: Option<&str>,
    ) -> CoreResult<SearchPage> {
        let resume = match cursor {
            None => None,
            Some(c) => {
                let after = decode_cursor(c)?.after;
                let (resource_type, id) = after.split_once('/').ok_or_else(|| CoreError::Invalid("invalid page cursor".into()))?;
                Some((resource_type.to_string(), id.to_string()))
            }
        };
        let start = match &resume {
            None => 0,
            Some((t, _)) => searched.iter().position(|(s, _)| *s >= t.as_str()).unwrap_or(searched.len()),
        };
        let mut matches = Vec::new();
        for (resource_type, filters) in &searched[start..] {
            let after = resume.as_ref().filter(|(t, _)| t == resource_type).map(|(_, id)| id.as_str());
            matches.extend(self.matches(ds, resource_type, filters, count + 1 - matches.len(), after).await?);
            if matches.len() > count {
                break;
            }
        }
        let next_cursor = if matches.len() > count {
            matches.truncate(count);
            matches.last().map(|v| encode_cursor(&Cursor { after: everything_key(v), position: None }))
        } else {
            None
        };
        let total = (cursor.is_none() && next_cursor.is_none()).then_some(matches.len() as u64);
        Ok(SearchPage { matches, next_cursor, total, included: Vec::new() })
    }

    /// Every resource matching the criteria (no paging), for chains, `_has`, conditional
    /// operations and sorting.
    pub async fn find_all(&self, ds: &ActiveDatastore, resource_type: &str, criteria: &[Criterion]) -> CoreResult<Vec<StoredVersion>> {
        self.find_up_to(ds, resource_type, criteria, usize::MAX).await
    }

    /// The first `limit` matches in id order (conditional interactions ask for two: enough to
    /// tell none, one and several apart).
    pub async fn find_up_to(
        &self,
        ds: &ActiveDatastore,
        resource_type: &str,
        criteria: &[Criterion],
        limit: usize,
    ) -> CoreResult<Vec<StoredVersion>> {
        let Some(filters) = self.resolve(ds, resource_type, criteria).await? else { return Ok(Vec::new()) };
        self.matches(ds, resource_type, &filters, limit, None).await
    }

    /// The one resource the criteria select, `None` when none does; `PreconditionFailed` for
    /// several (what conditional interactions and references need).
    pub async fn unique_match(
        &self,
        ds: &ActiveDatastore,
        resource_type: &str,
        criteria: &[Criterion],
    ) -> CoreResult<Option<StoredVersion>> {
        let mut found = self.find_up_to(ds, resource_type, criteria, 2).await?;
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            _ => Err(CoreError::PreconditionFailed("the criteria match more than one resource".into())),
        }
    }

    /// `Patient/{id}/$everything` (R4 patient-operation-everything): the patient and every
    /// resource in its compartment, optionally only of `types` and only changed at or after
    /// `since`, in (type, id) order, `count` per page. Resources the compartment's members
    /// reference are not added (the operation allows either).
    ///
    /// Errors: `NotFound` / `Gone` when the patient does not exist or was deleted.
    pub async fn everything(
        &self,
        ds: &ActiveDatastore,
        patient_id: &str,
        types: &[String],
        since: Option<chrono::DateTime<chrono::Utc>>,
        count: usize,
        cursor: Option<&str>,
    ) -> CoreResult<SearchPage> {
        let patient = self.resources.read(ds, "Patient", patient_id).await?;
        let all = self.patient_everything(ds, patient, types, since).await?;
        positioned_page(all, everything_key, count, cursor)
    }

    /// `Patient/$everything`: the `$everything` of every patient, patient after patient in id
    /// order (each as [`Self::everything`] lists it), `count` per page. A resource in the
    /// compartments of several patients appears once for each. The total is not counted.
    pub async fn everything_for_all(
        &self,
        ds: &ActiveDatastore,
        types: &[String],
        since: Option<chrono::DateTime<chrono::Utc>>,
        count: usize,
        cursor: Option<&str>,
    ) -> CoreResult<SearchPage> {
        // The cursor names the last patient and the last resource of its list returned.
        let resume = match cursor {
            None => None,
            Some(c) => {
                let c = decode_cursor(c)?;
                let (patient, key) = c.after.split_once('\n').ok_or_else(|| CoreError::Invalid("invalid page cursor".into()))?;
                Some((patient.to_string(), key.to_string(), c.position.unwrap_or(0)))
            }
        };
        let mut page = SearchPage::default();
        let mut last: Option<(String, String, usize)> = None;
        let mut patients: VecDeque<StoredVersion> = VecDeque::new();
        if let Some((patient, _, _)) = &resume {
            match self.resources.read(ds, "Patient", patient).await {
                Ok(v) => patients.push_back(v),
                Err(CoreError::NotFound(_) | CoreError::Gone(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let mut listing = self.listing(ds, "Patient", resume.as_ref().map(|(p, _, _)| p.as_str()));
        loop {
            if patients.is_empty() {
                patients.extend(self.next_candidates(ds, "Patient", &mut listing, 16).await?);
            }
            let Some(patient) = patients.pop_front() else { break };
            let patient_id = patient.id.clone();
            let list = self.patient_everything(ds, patient, types, since).await?;
            let start = match &resume {
                Some((p, key, position)) if *p == patient_id => {
                    list.iter().position(|v| everything_key(v) == *key).map_or(*position, |i| i + 1)
                }
                _ => 0,
            };
            for (i, version) in list.into_iter().enumerate().skip(start) {
                if page.matches.len() == count {
                    page.next_cursor =
                        last.map(|(p, key, position)| encode_cursor(&Cursor { after: format!("{p}\n{key}"), position: Some(position) }));
                    return Ok(page);
                }
                last = Some((patient_id.clone(), everything_key(&version), i + 1));
                page.matches.push(version);
            }
        }
        Ok(page)
    }

    /// One patient's `$everything`: the patient, then the members of its compartment, type by
    /// type and by id, read from the compartment's partition (one query per page of entries,
    /// or per type of `types`). Other Patients in the compartment (by `link`) are left out.
    async fn patient_everything(
        &self,
        ds: &ActiveDatastore,
        patient: StoredVersion,
        types: &[String],
        since: Option<chrono::DateTime<chrono::Utc>>,
    ) -> CoreResult<Vec<StoredVersion>> {
        let pk = layout::compartment_pk(&ds.id, "Patient", &patient.id);
        let ranges: Vec<SkRange> = if types.is_empty() {
            vec![SkRange::All]
        } else {
            let mut wanted: Vec<&String> = types.iter().filter(|t| *t != "Patient").collect();
            wanted.sort();
            wanted.dedup();
            wanted.into_iter().map(|t| SkRange::Prefix(format!("{t}#"))).collect()
        };
        let mut by_type: Vec<(String, Vec<EntryRef>)> = Vec::new();
        for range in ranges {
            for item in self.read_partition(Query::partition(pk.clone(), RANGE_PAGE).range(range)).await? {
                let (Some(member_type), Some(entry)) = (layout::compartment_member_type(&item.key.sk), EntryRef::from_item(&item)) else {
                    continue;
                };
                if member_type == "Patient" {
                    continue;
                }
                match by_type.last_mut() {
                    Some((t, entries)) if t == member_type => entries.push(entry),
                    _ => by_type.push((member_type.to_string(), vec![entry])),
                }
            }
        }
        let mut all = Vec::new();
        if types.is_empty() || types.iter().any(|t| t == "Patient") {
            all.push(patient);
        }
        for (member_type, entries) in by_type {
            for chunk in entries.chunks(ENTRY_PAGE) {
                all.extend(self.current_versions(ds, &member_type, chunk.to_vec()).await?);
            }
        }
        all.retain(|v| since.is_none_or(|s| v.last_updated >= s));
        Ok(all)
    }

    /// Turns criteria into filters, resolving chains and `_has`; `None` when some chain
    /// matches nothing (so the search matches nothing).
    async fn resolve(&self, ds: &ActiveDatastore, resource_type: &str, criteria: &[Criterion]) -> CoreResult<Option<Vec<Filter>>> {
        let mut filters = Vec::with_capacity(criteria.len());
        for criterion in criteria {
            let Some((link, rest)) = criterion.path.split_first() else {
                filters.push(Filter::Criterion(criterion.clone()));
                continue;
            };
            let inner = Criterion { path: rest.to_vec(), ..criterion.clone() };
            match link {
                Link::Forward { param, target } => {
                    let next_code = rest.first().map_or(criterion.param.code, |l| match l {
                        Link::Forward { param, .. } | Link::Reverse { param, .. } => param.code,
                    });
                    let targets: Vec<&str> = match target {
                        Some(t) => vec![t.as_str()],
                        None => param
                            .targets
                            .iter()
                            .copied()
                            .filter(|t| !rest.is_empty() || registry::search_param(t, next_code).is_some())
                            .collect(),
                    };
                    let mut references = Vec::new();
                    for target_type in targets {
                        let Some(inner) = retarget(&inner, target_type) else { continue };
                        for found in Box::pin(self.find_all(ds, target_type, std::slice::from_ref(&inner))).await? {
                            references.push(QueryValue::Reference(format!("{target_type}/{}", found.id)));
                        }
                    }
                    if references.is_empty() {
                        return Ok(None);
                    }
                    filters.push(Filter::Criterion(Criterion { path: Vec::new(), param, modifier: Modifier::None, values: references }));
                }
                Link::Reverse { source, param } => {
                    let mut ids = BTreeSet::new();
                    for found in Box::pin(self.find_all(ds, source, std::slice::from_ref(&inner))).await? {
                        let Some(body) = parse_body(&found)? else { continue };
                        for value in values::extract(source, param, &body) {
                            if let SearchValue::Reference { reference, .. } = value {
                                if let Some(id) = reference.strip_prefix(resource_type).and_then(|r| r.strip_prefix('/')) {
                                    ids.insert(id.to_string());
                                }
                            }
                        }
                    }
                    if ids.is_empty() {
                        return Ok(None);
                    }
                    filters.push(Filter::Ids(ids));
                }
            }
        }
        Ok(Some(filters))
    }

    /// One page in id order after the cursor.
    async fn page_by_id(
        &self,
        ds: &ActiveDatastore,
        resource_type: &str,
        filters: &[Filter],
        count: usize,
        cursor: Option<&str>,
    ) -> CoreResult<SearchPage> {
        let after = match cursor {
            None => None,
            Some(c) => Some(decode_cursor(c)?.after),
        };
        let index_key = self.resources.index_key(ds).await?;
        let (mut driver, driver_index) = self.driver(ds, &index_key, resource_type, filters, after.as_deref()).await?;
        let now = self.backends.clock.now().timestamp_micros();
        let mut matches = Vec::new();
        let wanted = count + 1;
        while matches.len() < wanted {
            let batch = self.next_candidates(ds, resource_type, &mut driver, (wanted - matches.len()).max(32)).await?;
            if batch.is_empty() {
                break;
            }
            for version in batch {
                if verify(resource_type, &version, filters, driver_index, now)? {
                    matches.push(version);
                }
            }
        }
        let next_cursor = if matches.len() > count {
            matches.truncate(count);
            matches.last().map(|v| encode_cursor(&Cursor { after: v.id.clone(), position: None }))
        } else {
            None
        };
        let total = (cursor.is_none() && next_cursor.is_none()).then_some(matches.len() as u64);
        Ok(SearchPage { matches, next_cursor, total, included: Vec::new() })
    }

    /// One page of sorted results.
    async fn page_sorted(
        &self,
        ds: &ActiveDatastore,
        resource_type: &str,
        filters: &[Filter],
        sort: &[SortKey],
        count: usize,
        cursor: Option<&str>,
    ) -> CoreResult<SearchPage> {
        let mut all = self.all_matches(ds, resource_type, filters).await?;
        let mut keyed = Vec::with_capacity(all.len());
        for version in all.drain(..) {
            let body = parse_body(&version)?.unwrap_or(Value::Null);
            let keys: Vec<Option<SortValue>> = sort.iter().map(|k| sort_value(resource_type, k, &body)).collect();
            keyed.push((keys, version));
        }
        keyed.sort_by(|(a, va), (b, vb)| compare_sort(sort, a, b).then_with(|| va.id.cmp(&vb.id)));
        let sorted: Vec<StoredVersion> = keyed.into_iter().map(|(_, v)| v).collect();
        positioned_page(sorted, |v| v.id.clone(), count, cursor)
    }

    /// Every match, in id order.
    async fn all_matches(&self, ds: &ActiveDatastore, resource_type: &str, filters: &[Filter]) -> CoreResult<Vec<StoredVersion>> {
        self.matches(ds, resource_type, filters, usize::MAX, None).await
    }

    /// The first `limit` matches with ids after `after`, in id order.
    async fn matches(
        &self,
        ds: &ActiveDatastore,
        resource_type: &str,
        filters: &[Filter],
        limit: usize,
        after: Option<&str>,
    ) -> CoreResult<Vec<StoredVersion>> {
        let index_key = self.resources.index_key(ds).await?;
        let (mut driver, driver_index) = self.driver(ds, &index_key, resource_type, filters, after).await?;
        let now = self.backends.clock.now().timestamp_micros();
        let mut matches = Vec::new();
        loop {
            let batch = self.next_candidates(ds, resource_type, &mut driver, 256.min(limit)).await?;
            if batch.is_empty() {
                return Ok(matches);
            }
            for version in batch {
                if verify(resource_type, &version, filters, driver_index, now)? {
                    matches.push(version);
                    if matches.len() >= limit {
                        return Ok(matches);
                    }
                }
            }
        }
    }

    /// Picks the filter whose index narrows candidates best. Returns the driver and, when its
    /// lookup is complete, the filter's index (which then needs no verification).
    async fn driver(
        &self,
        ds: &ActiveDatastore,
        index_key: &IndexKey,
        resource_type: &str,
        filters: &[Filter],
        after: Option<&str>,
    ) -> CoreResult<(Driver, Option<usize>)> {
        // Rank: id sets, complete equality lookups, other equality lookups, ranges, scan.
        let mut best: Option<(u8, usize, usize)> = None;
        let mut lookups = Vec::with_capacity(filters.len());
        for (i, filter) in filters.iter().enumerate() {
            let (rank, size, lookup) = match filter {
                Filter::Ids(ids) => (0, ids.len(), None),
                Filter::Criterion(c) => {
                    let lookup = terms::lookup(c);
                    let (rank, size) = lookup_rank(&lookup);
                    (rank, size, Some(vec![lookup]))
                }
                Filter::AnyOf(criteria) => {
                    let all: Vec<Lookup> = criteria.iter().map(terms::lookup).collect();
                    let rank = all.iter().map(|l| lookup_rank(l).0).max().unwrap_or(4);
                    let size = all.iter().map(|l| lookup_rank(l).1).sum();
                    (if rank <= 2 { rank } else { 4 }, size, Some(all))
                }
            };
            lookups.push(lookup);
            if best.is_none_or(|(r, s, _)| (rank, size) < (r, s)) {
                best = Some((rank, size, i));
            }
        }
        let Some((rank, _, chosen)) = best else { return Ok((self.listing(ds, resource_type, after), None)) };
        if rank >= 4 {
            return Ok((self.listing(ds, resource_type, after), None));
        }
        if let Filter::Ids(ids) = &filters[chosen] {
            let ids = ids.iter().filter(|id| after.is_none_or(|a| id.as_str() > a)).cloned().collect();
            return Ok((Driver::Ids(ids), Some(chosen)));
        }
        if rank == RANGE_RANK {
            // Criteria bounding a date window from both sides read the window only.
            let criteria: Vec<&Criterion> = filters
                .iter()
                .filter_map(|f| match f {
                    Filter::Criterion(c) => Some(c),
                    _ => None,
                })
                .collect();
            if let Some(Lookup::Ranges { param, ranges }) = terms::window(&criteria) {
                let collected = self.range_entries(ds, index_key, resource_type, param, &ranges, after).await?;
                return Ok((Driver::Collected(collected.into_values().flatten().collect()), None));
            }
        }
        let chosen_lookups = lookups[chosen].take().unwrap_or_default();
        let mut pks = Vec::new();
        let mut complete = true;
        let mut collected: BTreeMap<String, Vec<EntryRef>> = BTreeMap::new();
        let mut has_ranges = false;
        for lookup in chosen_lookups {
            match lookup {
                Lookup::Terms { param, terms, complete: c } => {
                    complete &= c;
                    pks.extend(
                        terms.iter().map(|t| layout::term_pk(&ds.id, resource_type, param, &index_key.blind(resource_type, param, t))),
                    );
                }
                Lookup::Ranges { param, ranges } => {
                    complete = false;
                    has_ranges = true;
                    for (id, entries) in self.range_entries(ds, index_key, resource_type, param, &ranges, after).await? {
                        collected.entry(id).or_default().extend(entries);
                    }
                }
                Lookup::Scan => return Ok((self.listing(ds, resource_type, after), None)),
            }
        }
        if has_ranges {
            if !pks.is_empty() {
                return Ok((self.listing(ds, resource_type, after), None));
            }
            // Other range filters narrow the collected candidates before any version is read
            // (`date=ge…&date=lt…`): their entries are supersets of their matches too.
            for (j, lookup) in lookups.iter().enumerate() {
                if j == chosen || collected.is_empty() {
                    continue;
                }
                if let Some([Lookup::Ranges { param, ranges }]) = lookup.as_deref() {
                    let other = self.range_entries(ds, index_key, resource_type, param, ranges, after).await?;
                    collected.retain(|id, _| other.contains_key(id));
                }
            }
            let entries = collected.into_values().flatten().collect();
            return Ok((Driver::Collected(entries), None));
        }
        Ok((Driver::Stream(MergedEntries::new(pks, after)), complete.then_some(chosen)))
    }

    /// The entries of a parameter's ordered partitions in `ranges`, by id (ids after `after`).
    async fn range_entries(
        &self,
        ds: &ActiveDatastore,
        index_key: &IndexKey,
        resource_type: &str,
        param: &str,
        ranges: &[terms::KeyRange],
        after: Option<&str>,
    ) -> CoreResult<BTreeMap<String, Vec<EntryRef>>> {
        let mut collected: BTreeMap<String, Vec<EntryRef>> = BTreeMap::new();
        for range in ranges {
            let unit = range.unit.as_ref().map(|u| index_key.blind(resource_type, param, u));
            let pk = layout::ordered_pk(&ds.id, resource_type, param, range.side, range.span, unit.as_deref());
            let sk_range = match (&range.from, &range.to) {
                (None, None) => SkRange::All,
                (Some(f), None) => SkRange::AtLeast(f.clone()),
                (None, Some(t)) => SkRange::AtMost(format!("{t}#~")),
                (Some(f), Some(t)) => SkRange::Between(f.clone(), format!("{t}#~")),
            };
            for item in self.read_partition(Query::partition(pk, RANGE_PAGE).range(sk_range)).await? {
                if let Some(entry) = EntryRef::from_item(&item) {
                    if after.is_none_or(|a| entry.id.as_str() > a) {
                        collected.entry(entry.id.clone()).or_default().push(entry);
                    }
                }
            }
        }
        Ok(collected)
    }

    fn listing(&self, ds: &ActiveDatastore, resource_type: &str, after: Option<&str>) -> Driver {
        Driver::Stream(MergedEntries::new(vec![layout::listing_pk(&ds.id, resource_type)], after))
    }

    /// Every item of a partition range.
    async fn read_partition(&self, mut query: Query) -> CoreResult<Vec<Item>> {
        let mut items = Vec::new();
        loop {
            let page = self.backends.table.query(&query).await?;
            items.extend(page.items);
            match page.last_evaluated {
                Some(last) => query.start_after = Some(last),
                None => return Ok(items),
            }
        }
    }

    /// The next candidates of the driver that are current versions, in id order.
    async fn next_candidates(
        &self,
        ds: &ActiveDatastore,
        resource_type: &str,
        driver: &mut Driver,
        want: usize,
    ) -> CoreResult<Vec<StoredVersion>> {
        match driver {
            Driver::Ids(ids) => {
                let mut out = Vec::new();
                while out.len() < want {
                    let Some(id) = ids.pop_front() else { break };
                    match self.resources.read(ds, resource_type, &id).await {
                        Ok(v) => out.push(v),
                        Err(CoreError::NotFound(_) | CoreError::Gone(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(out)
            }
            Driver::Collected(entries) => {
                let take = want.min(entries.len());
                let batch: Vec<EntryRef> = entries.drain(..take).collect();
                self.current_versions(ds, resource_type, batch).await
            }
            Driver::Stream(stream) => {
                let mut out = Vec::new();
                while out.len() < want {
                    let batch = stream.next_batch(self, want.max(ENTRY_PAGE)).await?;
                    if batch.is_empty() {
                        break;
                    }
                    out.extend(self.current_versions(ds, resource_type, batch).await?);
                }
                Ok(out)
            }
        }
    }

    /// The versions the entries name that are current and were stored by the entries' writes,
    /// in entry order, one per id.
    pub(crate) async fn current_versions(
        &self,
        ds: &ActiveDatastore,
        resource_type: &str,
        entries: Vec<EntryRef>,
    ) -> CoreResult<Vec<StoredVersion>> {
        let mut keys = Vec::with_capacity(entries.len() * 2);
        for e in &entries {
            keys.push(layout::version_key(&ds.id, resource_type, &e.id, e.version));
            keys.push(layout::version_key(&ds.id, resource_type, &e.id, e.version + 1));
        }
        let mut items: HashMap<Key, Item> = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            items.extend(self.backends.table.batch_get(chunk).await?.into_iter().map(|i| (i.key.clone(), i)));
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let next = layout::version_key(&ds.id, resource_type, &e.id, e.version + 1);
            let this = layout::version_key(&ds.id, resource_type, &e.id, e.version);
            let Some(item) = items.get(&this) else { continue };
            if !index::stored_by(item, &e.token) || seen.contains(&e.id) {
                continue;
            }
            // A newer version supersedes this one once committed (see `commit_record`).
            if self.resources.visible(ds, items.get(&next).cloned()).await?.is_some() {
                continue;
            }
            let Some(item) = self.resources.visible(ds, Some(item.clone())).await? else { continue };
            let version = self.resources.open_version_item(ds, &item).await?;
            if version.is_deleted() {
                continue;
            }
            seen.insert(e.id);
            out.push(version);
        }
        Ok(out)
    }

    /// The resources `_include` and `_revinclude` add to a page (not already in it).
    async fn includes(
        &self,
        ds: &ActiveDatastore,
        matches: &[StoredVersion],
        include: &[Include],
        revinclude: &[Include],
    ) -> CoreResult<Vec<StoredVersion>> {
        if include.is_empty() && revinclude.is_empty() {
            return Ok(Vec::new());
        }
        let mut have: BTreeSet<(String, String)> = matches.iter().map(|v| (v.resource_type.clone(), v.id.clone())).collect();
        let mut included = Vec::new();
        let mut frontier: Vec<StoredVersion> = matches.to_vec();
        for round in 0..MAX_ITERATIONS {
            let mut added = Vec::new();
            for inc in include.iter().filter(|i| round == 0 || i.iterate) {
                for source in &frontier {
                    if inc.source != "*" && inc.source != source.resource_type {
                        continue;
                    }
                    let Some(body) = parse_body(source)? else { continue };
                    for param in include_params(&source.resource_type, inc) {
                        for value in values::extract(&source.resource_type, param, &body) {
                            let SearchValue::Reference { reference, .. } = value else { continue };
                            let Some((t, id)) = reference.split_once('/') else { continue };
                            if inc.target.as_deref().is_some_and(|target| target != t) || id.contains('/') || !registry::is_resource_type(t)
                            {
                                continue;
                            }
                            if have.insert((t.to_string(), id.to_string())) {
                                match self.resources.read(ds, t, id).await {
                                    Ok(v) => added.push(v),
                                    Err(CoreError::NotFound(_) | CoreError::Gone(_)) => {}
                                    Err(e) => return Err(e),
                                }
                            }
                        }
                    }
                }
            }
            for inc in revinclude.iter().filter(|i| round == 0 || i.iterate) {
                for source_type in revinclude_sources(inc) {
                    for param in include_params(source_type, inc) {
                        let refs: Vec<QueryValue> = frontier
                            .iter()
                            .filter(|v| param.targets.is_empty() || param.targets.contains(&v.resource_type.as_str()))
                            .filter(|v| inc.target.as_deref().is_none_or(|t| t == v.resource_type))
                            .map(|v| QueryValue::Reference(format!("{}/{}", v.resource_type, v.id)))
                            .collect();
                        if refs.is_empty() {
                            continue;
                        }
                        let criterion = Criterion { path: Vec::new(), param, modifier: Modifier::None, values: refs };
                        for found in self.find_all(ds, source_type, &[criterion]).await? {
                            if have.insert((found.resource_type.clone(), found.id.clone())) {
                                added.push(found);
                            }
                        }
                    }
                }
            }
            if added.is_empty() || included.len() + added.len() > MAX_INCLUDED {
                included.extend(added);
                break;
            }
            included.extend(added.iter().cloned());
            frontier = added;
            if !include.iter().chain(revinclude).any(|i| i.iterate) {
                break;
            }
        }
        Ok(included)
    }
}

/// The parameters an include follows: the named one, or every reference parameter of the type.
fn include_params(resource_type: &str, inc: &Include) -> Vec<&'static SearchParamDef> {
    match inc.param {
        Some(p) => registry::search_param(resource_type, p.code).into_iter().collect(),
        None => registry::search_params(resource_type).filter(|p| p.kind == SearchParamType::Reference).collect(),
    }
}

/// The types a `_revinclude` reads from.
fn revinclude_sources(inc: &Include) -> Vec<&str> {
    if inc.source == "*" {
        registry::resource_types().to_vec()
    } else {
        vec![inc.source.as_str()]
    }
}

/// A criterion re-bound to the same-named parameter of another type (chains whose target type
/// was not given resolve the parameter on each candidate type).
fn retarget(criterion: &Criterion, target_type: &str) -> Option<Criterion> {
    if criterion.path.is_empty() {
        let param = registry::search_param(target_type, criterion.param.code)?;
        return Some(Criterion { param, ..criterion.clone() });
    }
    Some(criterion.clone())
}

/// The compartment filter of `{compartment}/{id}/{type}`: any of the type's compartment
/// parameters references the compartment resource. `None` when the type is not in it.
fn compartment_filter(compartment: &str, id: &str, resource_type: &str) -> Option<Filter> {
    if compartment == resource_type {
        return Some(Filter::Ids(BTreeSet::from([id.to_string()])));
    }
    let params = registry::compartment_params(compartment, resource_type);
    let criteria: Vec<Criterion> = params
        .iter()
        .filter_map(|code| registry::search_param(resource_type, code))
        .filter(|p| p.kind == SearchParamType::Reference)
        .map(|param| Criterion {
            path: Vec::new(),
            param,
            modifier: Modifier::None,
            values: vec![QueryValue::Reference(format!("{compartment}/{id}"))],
        })
        .collect();
    (!criteria.is_empty()).then_some(Filter::AnyOf(criteria))
}

fn lookup_rank(lookup: &Lookup) -> (u8, usize) {
    match lookup {
        Lookup::Terms { terms, complete: true, .. } => (1, terms.len()),
        Lookup::Terms { terms, .. } => (2, terms.len()),
        Lookup::Ranges { ranges, .. } => (RANGE_RANK, ranges.len()),
        Lookup::Scan => (4, 0),
    }
}

/// Whether a current version satisfies every filter (the complete driver excepted).
fn verify(resource_type: &str, version: &StoredVersion, filters: &[Filter], skip: Option<usize>, now: i64) -> CoreResult<bool> {
    let checked = || filters.iter().enumerate().filter(|(i, _)| Some(*i) != skip).map(|(_, f)| f);
    let body = match checked().any(|f| !matches!(f, Filter::Ids(_))) {
        true => parse_body(version)?.unwrap_or(Value::Null),
        false => Value::Null,
    };
    let holds = |c: &Criterion| matcher::matches_at(c, &values::extract(resource_type, c.param, &body), now);
    Ok(checked().all(|filter| match filter {
        Filter::Ids(ids) => ids.contains(&version.id),
        Filter::Criterion(c) => holds(c),
        Filter::AnyOf(criteria) => criteria.iter().any(holds),
    }))
}

fn parse_body(version: &StoredVersion) -> CoreResult<Option<Value>> {
    match &version.body {
        None => Ok(None),
        Some(body) => serde_json::from_slice(body).map(Some).map_err(|_| CoreError::Internal("stored body is not json".into())),
    }
}

/// A value a resource is sorted by.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum SortValue {
    Text(String),
    Instant(i64),
    Number(fhirlake_fhir::search::Decimal),
}

/// The value a sort key orders a resource by: the smallest of its values ascending, the
/// largest descending (search.html#sort).
fn sort_value(resource_type: &str, key: &SortKey, body: &Value) -> Option<SortValue> {
    let param = registry::search_param(resource_type, key.param.code)?;
    let mut found: Vec<SortValue> = values::extract(resource_type, param, body)
        .into_iter()
        .filter_map(|v| match v {
            SearchValue::Date(r) => Some(SortValue::Instant(if key.descending { r.hi } else { r.lo })),
            SearchValue::Number(n) => Some(SortValue::Number(n)),
            SearchValue::Quantity { value, .. } => Some(SortValue::Number(value)),
            SearchValue::String(s) => Some(SortValue::Text(values::fold(&s))),
            SearchValue::Token { code, .. } => Some(SortValue::Text(code)),
            SearchValue::Reference { reference, .. } => Some(SortValue::Text(reference)),
            SearchValue::Uri(u) => Some(SortValue::Text(u)),
            _ => None,
        })
        .collect();
    found.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    if key.descending {
        found.pop()
    } else {
        found.into_iter().next()
    }
}

/// Orders two resources' sort values; resources without a value come last either way.
fn compare_sort(sort: &[SortKey], a: &[Option<SortValue>], b: &[Option<SortValue>]) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    for (k, (x, y)) in sort.iter().zip(a.iter().zip(b)) {
        let o = match (x, y) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => {
                let o = x.partial_cmp(y).unwrap_or(Ordering::Equal);
                if k.descending {
                    o.reverse()
                } else {
                    o
                }
            }
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// A resource's place in a `$everything` list.
fn everything_key(v: &StoredVersion) -> String {
    format!("{}/{}", v.resource_type, v.id)
}

/// One page of a collected, ordered result: `count` items after the cursor's anchor (the key of
/// the last item returned; its position when that item is gone), with the total and the next
/// cursor.
fn positioned_page(
    items: Vec<StoredVersion>,
    key: impl Fn(&StoredVersion) -> String,
    count: usize,
    cursor: Option<&str>,
) -> CoreResult<SearchPage> {
    let total = items.len();
    let start = match cursor {
        None => 0,
        Some(c) => {
            let c = decode_cursor(c)?;
            items.iter().position(|v| key(v) == c.after).map_or(c.position.unwrap_or(0), |i| i + 1)
        }
    };
    let matches: Vec<StoredVersion> = items.into_iter().skip(start).take(count).collect();
    let end = start + matches.len();
    let next_cursor =
        (end < total).then(|| matches.last().map(|v| encode_cursor(&Cursor { after: key(v), position: Some(end) }))).flatten();
    Ok(SearchPage { matches, included: Vec::new(), next_cursor, total: Some(total as u64) })
}

/// The state of a page: the last id returned, and for sorted results its position.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Cursor {
    #[serde(rename = "a")]
    after: String,
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    position: Option<usize>,
}

fn encode_cursor(cursor: &Cursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(cursor).unwrap_or_default())
}

fn decode_cursor(text: &str) -> CoreResult<Cursor> {
    let invalid = || CoreError::Invalid("invalid page cursor".into());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
    serde_json::from_slice(&bytes).map_err(|_| invalid())
}

/// Index partitions read page by page and merged in id order.
struct MergedEntries {
    heads: Vec<PartitionHead>,
}

struct PartitionHead {
    query: Query,
    buffer: VecDeque<EntryRef>,
    done: bool,
}

impl MergedEntries {
    fn new(pks: Vec<String>, after: Option<&str>) -> Self {
        // `{id}#~` sorts after every `{id}#{token}` (tokens are hex) and before any longer id.
        let start = after.map(|a| format!("{a}#~"));
        let heads = pks
            .into_iter()
            .map(|pk| PartitionHead { query: Query::partition(pk, ENTRY_PAGE).after(start.clone()), buffer: VecDeque::new(), done: false })
            .collect();
        MergedEntries { heads }
    }

    /// Up to `want` entries in id order (several entries of one id come together).
    async fn next_batch(&mut self, service: &SearchService, want: usize) -> CoreResult<Vec<EntryRef>> {
        let mut out = Vec::with_capacity(want);
        while out.len() < want {
            for head in &mut self.heads {
                if head.buffer.is_empty() && !head.done {
                    let page = service.backends.table.query(&head.query).await?;
                    head.buffer.extend(page.items.iter().filter_map(EntryRef::from_item));
                    match page.last_evaluated {
                        Some(last) => head.query.start_after = Some(last),
                        None => head.done = true,
                    }
                }
            }
            let Some(min) = self.heads.iter().filter_map(|h| h.buffer.front()).map(|e| e.id.clone()).min() else { break };
            for head in &mut self.heads {
                while head.buffer.front().is_some_and(|e| e.id == min) {
                    if let Some(e) = head.buffer.pop_front() {
                        out.push(e);
                    }
                }
            }
        }
        Ok(out)
    }
}
