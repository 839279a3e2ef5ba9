//! List endpoints (API.md §3.1): the `{data,page,limit,total}` envelope, paging
//! (`page` from 1, `limit` 1-50 default 20, `sort` `created_at`/`-created_at` default
//! newest first) and the `filter[...]` grammar: comma lists (`PENDING,RUNNING`),
//! ranges (`a,b`, open ends `a,` and `,b`; a single number means exactly that value,
//! a single date means "from then on") and booleans as strings.
//!
//! Parsers take the decoded query pairs and name the offending parameter on error.
//! An unknown `filter[...]` key is an error rather than silently ignored, because a
//! typo there would return the wrong data without a word.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::FieldError;
use crate::ids::JobId;
use crate::job::{JobStatus, JobTask};
use crate::num::MAX_SAFE_INTEGER;
use crate::time::Timestamp;

/// Default page size.
pub const DEFAULT_LIMIT: u32 = 20;
/// Largest page size.
pub const MAX_LIMIT: u32 = 50;

/// Every list response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ListResponse<T> {
    /// This page's items.
    pub data: Vec<T>,
    /// 1-based page number.
    pub page: u64,
    /// Page size.
    pub limit: u32,
    /// Items matching the filters, over all pages.
    pub total: u64,
}

/// Which page, in which order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paging {
    /// 1-based.
    pub page: u64,
    /// 1-50.
    pub limit: u32,
    /// Newest first (the default, `-created_at`).
    pub newest_first: bool,
}

impl Default for Paging {
    fn default() -> Self {
        Self { page: 1, limit: DEFAULT_LIMIT, newest_first: true }
    }
}

impl Paging {
    /// Rows to skip.
    pub fn offset(&self) -> u64 {
        (self.page - 1).saturating_mul(u64::from(self.limit))
    }
}

/// An inclusive range; `None` ends are open.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Range<T> {
    /// Lower bound.
    pub min: Option<T>,
    /// Upper bound.
    pub max: Option<T>,
}

/// `GET /v1/jobs` filters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobFilter {
    /// `filter[uuid]`.
    pub uuids: Vec<JobId>,
    /// `filter[status]`.
    pub statuses: Vec<JobStatus>,
    /// `filter[task]`.
    pub tasks: Vec<JobTask>,
    /// `filter[cpu_count]`.
    pub cpu_count: Option<Range<i64>>,
    /// `filter[gpu_count]` (Gantry addition).
    pub gpu_count: Option<Range<i64>>,
    /// `filter[created_at]`, epoch ms.
    pub created_at: Option<Range<i64>>,
    /// `filter[min_ram_gb]`.
    pub min_ram_gb: Option<Range<f64>>,
    /// `filter[min_storage_gb]`.
    pub min_storage_gb: Option<Range<f64>>,
    /// `filter[min_vram_gb]`.
    pub min_vram_gb: Option<Range<f64>>,
    /// `filter[source_recipe_uuid]` (alias `filter[recipe_uuid]`).
    pub source_recipe_uuids: Vec<String>,
}

/// `GET /v1/api-keys` filters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApiKeyFilter {
    /// `filter[is_revoked]`.
    pub is_revoked: Option<bool>,
    /// `filter[created_at]`.
    pub created_at: Option<Range<i64>>,
    /// `filter[expires_at]`.
    pub expires_at: Option<Range<i64>>,
    /// `filter[account_uuid]` / `filter[account]` (operators only; others see their own).
    pub account_uuid: Option<crate::ids::AccountId>,
}

/// Parses `page`, `limit` and `sort`; other keys are left to the filters.
pub fn parse_paging(pairs: &[(String, String)]) -> Result<Paging, Vec<FieldError>> {
    let mut p = Paging::default();
    let mut errors = Vec::new();
    for (k, v) in pairs {
        match k.as_str() {
            "page" => match v.parse::<u64>() {
                Ok(n) if (1..=MAX_SAFE_INTEGER as u64).contains(&n) => p.page = n,
                _ => errors.push(FieldError::new("page", format!("must be an integer >= 1, got {v:?}"))),
            },
            "limit" => match v.parse::<u32>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => p.limit = n,
                _ => errors
                    .push(FieldError::new("limit", format!("must be an integer from 1 to {MAX_LIMIT}, got {v:?}"))),
            },
            "sort" => match v.as_str() {
                "created_at" => p.newest_first = false,
                "-created_at" => p.newest_first = true,
                _ => errors.push(FieldError::new("sort", format!("must be created_at or -created_at, got {v:?}"))),
            },
            _ => {}
        }
    }
    if errors.is_empty() { Ok(p) } else { Err(errors) }
}

/// Iterates `filter[name]` pairs as (name, value), recording unknown names.
pub(crate) fn filters<'a>(
    pairs: &'a [(String, String)],
    known: &'a [&str],
    errors: &'a mut Vec<FieldError>,
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    pairs.iter().filter_map(move |(k, v)| {
        let name = k.strip_prefix("filter[")?.strip_suffix(']')?;
        if known.contains(&name) {
            Some((name, v.as_str()))
        } else {
            errors.push(FieldError::new(k.clone(), format!("unknown filter; known filters: {}", known.join(", "))));
            None
        }
    })
}

pub(crate) fn list<T>(
    key: &str,
    value: &str,
    errors: &mut Vec<FieldError>,
    parse: impl Fn(&str) -> Option<T>,
    expected: &str,
) -> Vec<T> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match parse(item) {
            Some(v) => out.push(v),
            None => errors.push(FieldError::new(format!("filter[{key}]"), format!("{item:?} is not {expected}"))),
        }
    }
    out
}

pub(crate) fn range<T: Copy>(
    key: &str,
    value: &str,
    errors: &mut Vec<FieldError>,
    parse: impl Fn(&str) -> Option<T>,
    single_is_exact: bool,
) -> Option<Range<T>> {
    let bad = |errors: &mut Vec<FieldError>| {
        errors.push(FieldError::new(
            format!("filter[{key}]"),
            format!("{value:?} is not a value or a range \"min,max\" (either end may be empty)"),
        ));
        None
    };
    let end = |s: &str| -> Result<Option<T>, ()> {
        let s = s.trim();
        if s.is_empty() { Ok(None) } else { parse(s).map(Some).ok_or(()) }
    };
    match value.split_once(',') {
        None => match end(value) {
            Ok(Some(v)) => Some(Range { min: Some(v), max: single_is_exact.then_some(v) }),
            _ => bad(errors),
        },
        Some((a, b)) => match (end(a), end(b)) {
            (Ok(min), Ok(max)) => Some(Range { min, max }),
            _ => bad(errors),
        },
    }
}

fn int(s: &str) -> Option<i64> {
    s.parse().ok()
}
pub(crate) fn number(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}
fn time(s: &str) -> Option<i64> {
    Timestamp::parse(s).map(|t| t.0)
}
pub(crate) fn boolean(key: &str, v: &str, errors: &mut Vec<FieldError>) -> Option<bool> {
    match v {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => {
            errors.push(FieldError::new(format!("filter[{key}]"), format!("must be true or false, got {v:?}")));
            None
        }
    }
}

/// Parses the `GET /v1/jobs` filters.
pub fn parse_job_filter(pairs: &[(String, String)]) -> Result<JobFilter, Vec<FieldError>> {
    const KNOWN: &[&str] = &[
        "uuid",
        "status",
        "task",
        "cpu_count",
        "gpu_count",
        "created_at",
        "min_ram_gb",
        "min_storage_gb",
        "min_vram_gb",
        "source_recipe_uuid",
        "recipe_uuid",
    ];
    let mut errors = Vec::new();
    let mut f = JobFilter::default();
    let items: Vec<(String, String)> =
        filters(pairs, KNOWN, &mut errors).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for (key, value) in &items {
        let (key, value, e) = (key.as_str(), value.as_str(), &mut errors);
        match key {
            "uuid" => f.uuids.extend(list(key, value, e, |s| s.parse::<JobId>().ok(), "a UUID")),
            "status" => f.statuses.extend(list(key, value, e, JobStatus::parse, "a job status")),
            "task" => f.tasks.extend(list(key, value, e, JobTask::parse, "BATCH or PERSISTENT")),
            "cpu_count" => f.cpu_count = range(key, value, e, int, true),
            "gpu_count" => f.gpu_count = range(key, value, e, int, true),
            "created_at" => f.created_at = range(key, value, e, time, false),
            // A job's `min_*` is itself a minimum, so a single value means "at least"
            // (what clients asking for "jobs that need 16 GB or more" expect); cpu and
            // gpu counts stay exact.
            "min_ram_gb" => f.min_ram_gb = range(key, value, e, number, false),
            "min_storage_gb" => f.min_storage_gb = range(key, value, e, number, false),
            "min_vram_gb" => f.min_vram_gb = range(key, value, e, number, false),
            _ => f.source_recipe_uuids.extend(list(key, value, e, |s| Some(s.to_string()), "")),
        }
    }
    if errors.is_empty() { Ok(f) } else { Err(errors) }
}

/// Parses the `GET /v1/api-keys` filters.
pub fn parse_api_key_filter(pairs: &[(String, String)]) -> Result<ApiKeyFilter, Vec<FieldError>> {
    const KNOWN: &[&str] = &["is_revoked", "created_at", "expires_at", "account_uuid", "account"];
    let mut errors = Vec::new();
    let mut f = ApiKeyFilter::default();
    let items: Vec<(String, String)> =
        filters(pairs, KNOWN, &mut errors).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for (key, value) in &items {
        let (key, value, e) = (key.as_str(), value.as_str(), &mut errors);
        match key {
            "is_revoked" => f.is_revoked = boolean(key, value, e),
            "created_at" => f.created_at = range(key, value, e, time, false),
            "expires_at" => f.expires_at = range(key, value, e, time, false),
            _ => match value.parse() {
                Ok(id) => f.account_uuid = Some(id),
                Err(_) => e.push(FieldError::new(format!("filter[{key}]"), "must be an account UUID")),
            },
        }
    }
    if errors.is_empty() { Ok(f) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn paging_defaults_and_bounds() {
        assert_eq!(parse_paging(&[]).unwrap(), Paging::default());
        let p = parse_paging(&q(&[("page", "3"), ("limit", "50"), ("sort", "created_at")])).unwrap();
        assert_eq!((p.page, p.limit, p.newest_first, p.offset()), (3, 50, false, 100));
        let e = parse_paging(&q(&[("page", "0"), ("limit", "51"), ("sort", "title")])).unwrap_err();
        let fields: Vec<_> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["page", "limit", "sort"]);
    }

    #[test]
    fn job_filters_lists_and_ranges() {
        let f = parse_job_filter(&q(&[
            ("filter[status]", "PENDING,running"),
            ("filter[min_ram_gb]", "8,16"),
            ("filter[cpu_count]", "4"),
            ("filter[created_at]", "2023-01-01,2024-01-01"),
            ("filter[min_vram_gb]", ",24"),
            ("limit", "5"),
        ]))
        .unwrap();
        assert_eq!(f.statuses, [JobStatus::Pending, JobStatus::Running]);
        assert_eq!(f.min_ram_gb, Some(Range { min: Some(8.0), max: Some(16.0) }));
        assert_eq!(f.cpu_count, Some(Range { min: Some(4), max: Some(4) }));
        assert_eq!(f.min_vram_gb, Some(Range { min: None, max: Some(24.0) }));
        assert_eq!(f.created_at, Some(Range { min: Some(1_672_531_200_000), max: Some(1_704_067_200_000) }));
    }

    #[test]
    fn a_single_min_value_means_at_least() {
        let f = parse_job_filter(&q(&[
            ("filter[min_storage_gb]", "16"),
            ("filter[min_ram_gb]", "8"),
            ("filter[min_vram_gb]", "24"),
        ]))
        .unwrap();
        assert_eq!(f.min_storage_gb, Some(Range { min: Some(16.0), max: None }));
        assert_eq!(f.min_ram_gb, Some(Range { min: Some(8.0), max: None }));
        assert_eq!(f.min_vram_gb, Some(Range { min: Some(24.0), max: None }));
    }

    #[test]
    fn bad_filters_are_named() {
        let e = parse_job_filter(&q(&[
            ("filter[status]", "PENDING,SLEEPING"),
            ("filter[colour]", "red"),
            ("filter[cpu_count]", "many"),
        ]))
        .unwrap_err();
        let fields: Vec<_> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["filter[colour]", "filter[status]", "filter[cpu_count]"]);
    }
}
