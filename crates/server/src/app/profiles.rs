//! Consumer profiles (API.md §4.11): one per account, created on first use, holding
//! the consumer's region allowlist and billing flags.
//!
//! Who may change what: the owner sets `allowed_region_codes` (restricting where
//! their own jobs run harms no one); `is_active` and `is_compute_billing_enabled`
//! decide whether a consumer may run and pay, and the limits (`max_pending_jobs`,
//! `max_stored_job_bytes`, `rate_limit_rps`: Gantry's, see `app::quotas`) how much it
//! may take, so only operators (`.all` scope) set them; an owner trying to is a 403
//! naming the field.

use gantry_store::Page;
use gantry_types::billing::{
    ConsumerProfile, ConsumerProfileFilter, UpdateConsumerProfileRequest, check_profile_limits, check_region_codes,
};
use gantry_types::list::Paging;
use gantry_types::{AccountId, Timestamp};

use crate::app::error::AppError;
use crate::state::{AppState, now_ms};

/// Profiles recently read or written, so job submission (the hot path) does not
/// write or read the store for each job. An entry lives [`ProfileCache::TTL`]; a change
/// made through this server replaces it at once, one made through another server
/// sharing the database is seen within the TTL (like API keys' cache).
#[derive(Default)]
pub struct ProfileCache {
    entries: std::sync::RwLock<std::collections::HashMap<AccountId, (std::time::Instant, ConsumerProfile)>>,
}

impl ProfileCache {
    /// How long an entry is trusted.
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(5);

    fn get(&self, account: AccountId) -> Option<ConsumerProfile> {
        let entries = self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.get(&account).filter(|(at, _)| at.elapsed() < Self::TTL).map(|(_, p)| p.clone())
    }

    /// The cached profile's `rate_limit_rps` (`None`: not cached or stale), without
    /// cloning the profile: every signed request asks.
    fn rate_limit_rps(&self, account: AccountId) -> Option<Option<f64>> {
        let entries = self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.get(&account).filter(|(at, _)| at.elapsed() < Self::TTL).map(|(_, p)| p.rate_limit_rps)
    }

    fn put(&self, profile: &ConsumerProfile) {
        let mut entries = self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() > 100_000 {
            entries.retain(|_, (at, _)| at.elapsed() < Self::TTL);
        }
        entries.insert(profile.account_uuid, (std::time::Instant::now(), profile.clone()));
    }
}

/// The account's profile (from the cache when fresh), created if it has none.
pub async fn cached(state: &AppState, account: AccountId) -> Result<ConsumerProfile, AppError> {
    if let Some(p) = state.caches.profiles.get(account) {
        return Ok(p);
    }
    let p = ensure(state, account).await?;
    state.caches.profiles.put(&p);
    Ok(p)
}

/// The account's own request rate, if its profile sets one (see `crate::rate_limit`).
pub async fn rate_limit_rps(state: &AppState, account: AccountId) -> Result<Option<f64>, AppError> {
    match state.caches.profiles.rate_limit_rps(account) {
        Some(rps) => Ok(rps),
        None => Ok(cached(state, account).await?.rate_limit_rps),
    }
}

/// The account's profile, created (active, billed) if it has none.
pub async fn ensure(state: &AppState, account: AccountId) -> Result<ConsumerProfile, AppError> {
    let now = now_ms();
    let fresh = ConsumerProfile {
        object: "consumer_profile".into(),
        uuid: gantry_types::ConsumerProfileId::new(),
        account_uuid: account,
        is_active: true,
        is_compute_billing_enabled: true,
        allowed_region_codes: vec![],
        max_pending_jobs: None,
        max_stored_job_bytes: None,
        rate_limit_rps: None,
        render_user_id: None,
        created_at: Timestamp(now),
        updated_at: Timestamp(now),
        deleted_at: None,
    };
    Ok(state.store.consumer_profile_ensure(&fresh).await?)
}

/// Lists profiles in scope; the caller's own exists from its first look on.
pub async fn list(
    state: &AppState,
    scope: Option<AccountId>,
    caller: AccountId,
    filter: &ConsumerProfileFilter,
    paging: Paging,
) -> Result<Page<ConsumerProfile>, AppError> {
    ensure(state, caller).await?;
    Ok(state.store.consumer_profile_list(scope, filter, paging).await?)
}

/// Applies a PATCH. `operator`: the caller holds `consumer_profiles.update.all`.
pub async fn update(
    state: &AppState,
    scope: Option<AccountId>,
    operator: bool,
    id: gantry_types::ConsumerProfileId,
    patch: UpdateConsumerProfileRequest,
) -> Result<ConsumerProfile, AppError> {
    let mut errors = Vec::new();
    if let Some(codes) = &patch.allowed_region_codes {
        check_region_codes("allowed_region_codes", codes, &mut errors);
    }
    check_profile_limits(&patch, &mut errors);
    if !errors.is_empty() {
        return Err(errors.into());
    }
    if !operator {
        let held_back = [
            ("is_active", patch.is_active.is_some()),
            ("is_compute_billing_enabled", patch.is_compute_billing_enabled.is_some()),
            ("max_pending_jobs", patch.max_pending_jobs.is_some()),
            ("max_stored_job_bytes", patch.max_stored_job_bytes.is_some()),
            ("rate_limit_rps", patch.rate_limit_rps.is_some()),
        ];
        if let Some((field, _)) = held_back.iter().find(|f| f.1) {
            return Err(AppError::Forbidden {
                code: "operator_only_field",
                message: format!("{field} is set by operators only (consumer_profiles.update.all)"),
            });
        }
    }
    let mut patch = patch;
    if let Some(codes) = &mut patch.allowed_region_codes {
        let mut seen = Vec::new();
        codes.retain(|c| {
            !seen.contains(c) && {
                seen.push(c.clone());
                true
            }
        });
    }
    let after = state
        .store
        .consumer_profile_update(scope, id, &patch, now_ms())
        .await?
        .ok_or_else(|| AppError::not_found("consumer profile", id))?;
    state.caches.profiles.put(&after);
    // The scheduler rereads the region allowlists with the queue.
    state.signals.wake_scheduler();
    Ok(after)
}

/// The regions a job may run in: its own list ∩ its consumer's allowlist (an empty
/// list means "anywhere"). `None` = anywhere; `Some([])` = nowhere (disjoint lists).
pub fn effective_regions(job: &[String], profile: &[String]) -> Option<Vec<String>> {
    match (job.is_empty(), profile.is_empty()) {
        (true, true) => None,
        (false, true) => Some(job.to_vec()),
        (true, false) => Some(profile.to_vec()),
        (false, false) => Some(job.iter().filter(|r| profile.contains(r)).cloned().collect()),
    }
}

/// Words for a PENDING job's reason when its consumer profile narrows its regions.
pub fn region_note(job: &[String], profile: &[String]) -> Option<String> {
    if profile.is_empty() {
        return None;
    }
    let effective = effective_regions(job, profile).unwrap_or_default();
    let job_text = if job.is_empty() { "any region".to_string() } else { job.join(", ") };
    let effective_text = if effective.is_empty() { "none".to_string() } else { effective.join(", ") };
    Some(format!(
        "effective regions: {effective_text} (the job allows {job_text}; the consumer profile allows {})",
        profile.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn effective_regions_intersect_and_empty_means_anywhere() {
        assert_eq!(effective_regions(&[], &[]), None);
        assert_eq!(effective_regions(&v(&["eu-west-1"]), &[]), Some(v(&["eu-west-1"])));
        assert_eq!(effective_regions(&[], &v(&["us-east-1"])), Some(v(&["us-east-1"])));
        assert_eq!(effective_regions(&v(&["eu-west-1", "us-east-1"]), &v(&["us-east-1"])), Some(v(&["us-east-1"])));
        assert_eq!(effective_regions(&v(&["eu-west-1"]), &v(&["us-east-1"])), Some(vec![]));
        let note = region_note(&v(&["eu-west-1"]), &v(&["us-east-1"])).unwrap();
        assert!(note.starts_with("effective regions: none"), "{note}");
        assert_eq!(region_note(&v(&["eu-west-1"]), &[]), None);
    }
}
