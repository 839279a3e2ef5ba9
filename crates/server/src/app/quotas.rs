//! Per-account quotas on what an account keeps in the control plane: how many of its
//! jobs may be PENDING at once, and how many bytes of job JSON it may have stored. One
//! consumer once stored 332,052 jobs (546 MB) in 15 s; the request rate limit
//! (`crate::rate_limit`) bounds the speed, these bound the total.
//!
//! Each limit comes from the deployment (`--max-pending-jobs`,
//! `--max-stored-job-bytes`; 0 = none, the default) unless the consumer's profile
//! overrides it (`max_pending_jobs`, `max_stored_job_bytes`, set by operators; 0 = no
//! limit for that consumer). Operator keys (any `.all` permission) are exempt.
//!
//! The check is the store's: `job_create_within` reads the account's usage counters and
//! inserts in one serialized step per account, so concurrent submissions cannot slip
//! past a limit, and a refusal writes nothing. The counters are maintained by the
//! database in the same transaction as every job insert and status change, so a check
//! reads a row, never counts jobs.
//!
//! Over the pending-jobs quota: 429 with `Retry-After`, because it frees up by itself
//! as the scheduler places jobs, and clients already back off on 429. Over the storage
//! quota: 403, because waiting does not help (jobs are kept), only an operator does.
//! Both messages name the limit and the usage.

use gantry_store::{JobQuota, Quota, QuotaExceeded};
use gantry_types::billing::ConsumerProfile;

use crate::app::error::AppError;

/// A deployment's quotas; 0 is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quotas {
    /// Most PENDING jobs per account.
    pub max_pending_jobs: u64,
    /// Most bytes of stored job JSON per account.
    pub max_stored_job_bytes: u64,
}

/// Whether a submission is held to the quotas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// A consumer: the quotas apply.
    Limited,
    /// An operator key: no quota applies.
    Exempt,
}

impl Admission {
    /// Exempt for keys with any `.all` permission (operators).
    pub fn for_permissions(permissions: &[String]) -> Self {
        if permissions.iter().any(|p| p.ends_with(".all")) { Self::Exempt } else { Self::Limited }
    }
}

/// The limits a submission by `profile`'s account must stay within.
pub fn job_quota(deployment: Quotas, profile: &ConsumerProfile, admission: Admission) -> JobQuota {
    if admission == Admission::Exempt {
        return JobQuota::UNLIMITED;
    }
    let pick = |own: Option<u64>, default: u64| Some(own.unwrap_or(default)).filter(|&v| v > 0);
    JobQuota {
        max_pending_jobs: pick(profile.max_pending_jobs, deployment.max_pending_jobs),
        max_job_bytes: pick(profile.max_stored_job_bytes, deployment.max_stored_job_bytes),
    }
}

/// Seconds a client over the pending-jobs quota is asked to wait.
pub const PENDING_RETRY_AFTER_SECS: u64 = 10;

/// The error a refused submission gets.
pub fn refusal(e: QuotaExceeded) -> AppError {
    match e.quota {
        Quota::PendingJobs => AppError::TooMany {
            code: "pending_jobs_quota_exceeded",
            message: format!(
                "this account has {} PENDING jobs and may have at most {} (max_pending_jobs); wait until some \
                 are placed or cancel some, or ask an operator to raise the limit",
                e.usage, e.limit
            ),
            retry_after_secs: PENDING_RETRY_AFTER_SECS,
        },
        Quota::JobBytes => AppError::Forbidden {
            code: "job_storage_quota_exceeded",
            message: format!(
                "this account stores {} bytes of jobs and this job adds {}, over its limit of {} bytes \
                 (max_stored_job_bytes); ask an operator to raise the limit",
                e.usage, e.adding, e.limit
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use gantry_types::{AccountId, ConsumerProfileId, Timestamp};

    use super::*;

    fn profile(max_pending_jobs: Option<u64>, max_stored_job_bytes: Option<u64>) -> ConsumerProfile {
        ConsumerProfile {
            object: "consumer_profile".into(),
            uuid: ConsumerProfileId::new(),
            account_uuid: AccountId::new(),
            is_active: true,
            is_compute_billing_enabled: true,
            allowed_region_codes: vec![],
            max_pending_jobs,
            max_stored_job_bytes,
            rate_limit_rps: None,
            render_user_id: None,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            deleted_at: None,
        }
    }

    #[test]
    fn the_profile_overrides_the_deployment_and_zero_is_no_limit() {
        let deployment = Quotas { max_pending_jobs: 100, max_stored_job_bytes: 0 };
        let q = job_quota(deployment, &profile(None, None), Admission::Limited);
        assert_eq!(q, JobQuota { max_pending_jobs: Some(100), max_job_bytes: None });
        let q = job_quota(deployment, &profile(Some(5), Some(1_000)), Admission::Limited);
        assert_eq!(q, JobQuota { max_pending_jobs: Some(5), max_job_bytes: Some(1_000) });
        let q = job_quota(deployment, &profile(Some(0), None), Admission::Limited);
        assert_eq!(q, JobQuota::UNLIMITED, "0 on the profile lifts the deployment's limit");
        let q = job_quota(deployment, &profile(Some(5), Some(1)), Admission::Exempt);
        assert_eq!(q, JobQuota::UNLIMITED, "operators are exempt");
    }

    #[test]
    fn operators_are_keys_with_an_all_permission() {
        assert_eq!(Admission::for_permissions(&["jobs.create.all".into()]), Admission::Exempt);
        assert_eq!(Admission::for_permissions(&["jobs.create.own".into()]), Admission::Limited);
    }

    #[test]
    fn refusals_name_the_limit_and_the_usage() {
        let e = refusal(QuotaExceeded { quota: Quota::PendingJobs, limit: 3, usage: 3, adding: 1 });
        assert!(matches!(&e, AppError::TooMany { message, .. } if message.contains("3 PENDING")), "{e}");
        let e = refusal(QuotaExceeded { quota: Quota::JobBytes, limit: 1_000, usage: 900, adding: 200 });
        assert!(
            matches!(&e, AppError::Forbidden { message, .. } if message.contains("900") && message.contains("1000")),
            "{e}"
        );
    }
}
