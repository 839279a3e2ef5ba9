//! Timeouts: a run that did not start in time, a BATCH run that ran too long, and a
//! PENDING job that no node took in time. Each returns the reason to record, or
//! `None` while the limit holds.
//!
//! Limits are strict (`elapsed > limit`): a run exactly at its limit has not overstayed.

use gantry_types::job_run::JobRunStatus;

use crate::human;

/// What the timeouts need to know about an active run.
#[derive(Clone, Debug, PartialEq)]
pub struct ActiveRun {
    /// ASSIGNED, PREPARING or RUNNING.
    pub status: JobRunStatus,
    /// When it was placed.
    pub created_at_ms: i64,
    /// When it reached RUNNING.
    pub started_at_ms: Option<i64>,
    /// Its job's `max_timeout_start_ms` (None: no limit).
    pub start_limit_ms: Option<i64>,
    /// Its job's `max_timeout_run_ms` (None: PERSISTENT, no limit).
    pub run_limit_ms: Option<i64>,
}

/// Why `run` must fail now, if it overstayed its start or run limit.
pub fn run_overstayed(run: &ActiveRun, now_ms: i64) -> Option<String> {
    match run.status {
        JobRunStatus::Assigned | JobRunStatus::Preparing => {
            let limit = run.start_limit_ms?;
            (now_ms - run.created_at_ms > limit)
                .then(|| format!("start timeout: the container was not running within {}", human(limit)))
        }
        JobRunStatus::Running => {
            let (limit, started) = (run.run_limit_ms?, run.started_at_ms?);
            (now_ms - started > limit)
                .then(|| format!("run timeout: still running after {} (max_timeout_run_ms)", human(limit)))
        }
        _ => None,
    }
}

/// Why a PENDING job must fail now, if its assignment deadline passed; `why_pending`
/// is the scheduler's last word on why nothing fit.
pub fn assignment_expired(
    timeout_assign_at_ms: i64,
    max_timeout_assign_ms: i64,
    why_pending: Option<&str>,
    now_ms: i64,
) -> Option<String> {
    (timeout_assign_at_ms < now_ms).then(|| {
        format!(
            "no node satisfied the job within {}{}",
            human(max_timeout_assign_ms),
            why_pending.map(|w| format!(": {w}")).unwrap_or_default()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(status: JobRunStatus) -> ActiveRun {
        ActiveRun {
            status,
            created_at_ms: 1_000,
            started_at_ms: Some(2_000),
            start_limit_ms: Some(60_000),
            run_limit_ms: Some(120_000),
        }
    }

    #[test]
    fn a_start_timeout_counts_from_placement() {
        let run = active(JobRunStatus::Preparing);
        assert_eq!(run_overstayed(&run, 61_000), None, "exactly at the limit is in time");
        assert_eq!(
            run_overstayed(&run, 61_001).as_deref(),
            Some("start timeout: the container was not running within 1m")
        );
    }

    #[test]
    fn a_run_timeout_counts_from_the_start_and_needs_a_limit() {
        let run = active(JobRunStatus::Running);
        assert_eq!(run_overstayed(&run, 122_000), None);
        assert!(run_overstayed(&run, 122_001).unwrap().starts_with("run timeout: still running after 2m"));
        let persistent = ActiveRun { run_limit_ms: None, ..run };
        assert_eq!(run_overstayed(&persistent, i64::MAX), None);
    }

    #[test]
    fn ended_runs_never_time_out() {
        for status in [JobRunStatus::Completed, JobRunStatus::Failed, JobRunStatus::Cancelled] {
            assert_eq!(run_overstayed(&active(status), i64::MAX), None);
        }
    }

    #[test]
    fn an_assignment_timeout_says_why_nothing_fit() {
        assert_eq!(assignment_expired(10_000, 5_000, None, 10_000), None);
        assert_eq!(
            assignment_expired(10_000, 5_000, Some("no node has 8 GPUs"), 10_001).as_deref(),
            Some("no node satisfied the job within 5.0s: no node has 8 GPUs")
        );
    }
}
