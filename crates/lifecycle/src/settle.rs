//! How a job settles: the one transition its latest attempt's runs call for.
//!
//! A job's status follows its runs. While any run of the latest attempt is still
//! active nothing is decided (a failed gang member's siblings are told to stop and the
//! job settles once they have, so a gang settles and retries as one). Once all have
//! ended: a CANCELLING job becomes CANCELLED; a BATCH job whose runs all completed
//! becomes COMPLETED; anything else (a failure, or a PERSISTENT job's container
//! exiting at all) consumes a retry ([`retry_or_fail`]). PENDING and terminal jobs are
//! never touched, which makes settling idempotent.

use gantry_types::job::{JobStatus, JobTask};
use gantry_types::job_run::JobRunStatus;

/// What settling needs to know about a job.
#[derive(Clone, Debug, PartialEq)]
pub struct JobFacts {
    /// Its status now.
    pub status: JobStatus,
    /// BATCH or PERSISTENT.
    pub task: JobTask,
    /// Retries allowed after the first attempt.
    pub max_retry_count: i64,
    /// Its current reason (a cancel keeps it).
    pub status_reason: Option<String>,
}

/// What settling needs to know about one run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunFacts {
    /// 0 for the first attempt, 1 for the first retry, ...
    pub attempt: u32,
    /// Its status now.
    pub status: JobRunStatus,
    /// Why it ended, when it did.
    pub status_reason: Option<String>,
}

/// The transition settling decided: `from` the job's status at decision time to `to`.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The status the decision was made from (the write is a compare-and-set on it).
    pub from: JobStatus,
    /// The new status.
    pub to: JobStatus,
    /// The new `status_reason`.
    pub reason: Option<String>,
}

/// The transition `runs` (every attempt's) call for, or `None` when the job stays.
pub fn settle(job: &JobFacts, runs: &[RunFacts]) -> Option<Decision> {
    if job.status.is_terminal() || job.status == JobStatus::Pending {
        return None;
    }
    let current = latest_attempt(runs);
    let active = current.iter().any(|r| !r.status.is_terminal());
    let decide = |to, reason| Some(Decision { from: job.status, to, reason });
    if job.status == JobStatus::Cancelling {
        return if active { None } else { decide(JobStatus::Cancelled, job.status_reason.clone()) };
    }
    if active {
        // A gang member failed: the others are told to stop (see desired state) and
        // the job settles once they have.
        return None;
    }
    // The run that failed explains the attempt better than the gang members that were
    // stopped because of it.
    let failed = current
        .iter()
        .find(|r| r.status == JobRunStatus::Failed)
        .or_else(|| current.iter().find(|r| r.status != JobRunStatus::Completed));
    match (failed, job.task) {
        (None, JobTask::Batch) => decide(JobStatus::Completed, None),
        (failure, _) => {
            let why = match failure {
                Some(r) => r.status_reason.clone().unwrap_or_else(|| format!("run {}", r.status.as_str())),
                None => "the container of a PERSISTENT job exited".to_string(),
            };
            let (to, reason) = retry_or_fail(job.max_retry_count, attempts_used(runs), why);
            decide(to, Some(reason))
        }
    }
}

/// The runs of the latest attempt.
pub fn latest_attempt(runs: &[RunFacts]) -> Vec<&RunFacts> {
    let last = runs.iter().map(|r| r.attempt).max();
    runs.iter().filter(|r| Some(r.attempt) == last).collect()
}

/// How many attempts have been made (the highest attempt number plus one).
pub fn attempts_used(runs: &[RunFacts]) -> i64 {
    runs.iter().map(|r| r.attempt).max().map_or(0, |a| i64::from(a) + 1)
}

/// The retry choice after a failed attempt: PENDING again while retries remain
/// (`attempts_used` ≤ `max_retry_count`), FAILED otherwise; with the reason to record.
pub fn retry_or_fail(max_retry_count: i64, attempts_used: i64, why: String) -> (JobStatus, String) {
    if attempts_used <= max_retry_count {
        (JobStatus::Pending, format!("retrying ({attempts_used} of {max_retry_count} retries) after: {why}"))
    } else if max_retry_count > 0 {
        (JobStatus::Failed, format!("{why} (no retries left of {max_retry_count})"))
    } else {
        (JobStatus::Failed, why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(status: JobStatus, task: JobTask, retries: i64) -> JobFacts {
        JobFacts { status, task, max_retry_count: retries, status_reason: None }
    }

    fn run(attempt: u32, status: JobRunStatus, reason: Option<&str>) -> RunFacts {
        RunFacts { attempt, status, status_reason: reason.map(str::to_string) }
    }

    #[test]
    fn a_batch_job_whose_runs_completed_completes() {
        let j = job(JobStatus::Running, JobTask::Batch, 0);
        let d = settle(&j, &[run(0, JobRunStatus::Completed, None), run(0, JobRunStatus::Completed, None)]).unwrap();
        assert_eq!((d.from, d.to, d.reason), (JobStatus::Running, JobStatus::Completed, None));
    }

    #[test]
    fn a_failure_is_retried_while_retries_remain_then_fails() {
        let j = job(JobStatus::Running, JobTask::Batch, 1);
        let first = [run(0, JobRunStatus::Failed, Some("exit code 3"))];
        let d = settle(&j, &first).unwrap();
        assert_eq!(d.to, JobStatus::Pending);
        assert_eq!(d.reason.as_deref(), Some("retrying (1 of 1 retries) after: exit code 3"));
        let second = [run(0, JobRunStatus::Failed, Some("exit code 3")), run(1, JobRunStatus::Failed, None)];
        let d = settle(&j, &second).unwrap();
        assert_eq!((d.to, d.reason.as_deref()), (JobStatus::Failed, Some("run FAILED (no retries left of 1)")));
    }

    #[test]
    fn without_retries_the_reason_is_the_runs() {
        let j = job(JobStatus::Running, JobTask::Batch, 0);
        let d = settle(&j, &[run(0, JobRunStatus::Failed, Some("node lost"))]).unwrap();
        assert_eq!((d.to, d.reason.as_deref()), (JobStatus::Failed, Some("node lost")));
    }

    #[test]
    fn a_gang_waits_for_every_member_and_blames_the_failed_one() {
        let j = job(JobStatus::Running, JobTask::Batch, 0);
        let waiting = [run(0, JobRunStatus::Failed, Some("oom")), run(0, JobRunStatus::Running, None)];
        assert_eq!(settle(&j, &waiting), None);
        let stopped =
            [run(0, JobRunStatus::Cancelled, Some("gang member failed")), run(0, JobRunStatus::Failed, Some("oom"))];
        assert_eq!(settle(&j, &stopped).unwrap().reason.as_deref(), Some("oom"));
    }

    #[test]
    fn a_persistent_job_that_exits_is_retried_or_failed() {
        let j = job(JobStatus::Running, JobTask::Persistent, 0);
        let d = settle(&j, &[run(0, JobRunStatus::Completed, None)]).unwrap();
        assert_eq!((d.to, d.reason.as_deref()), (JobStatus::Failed, Some("the container of a PERSISTENT job exited")));
    }

    #[test]
    fn a_cancel_finishes_once_every_run_stopped_and_keeps_its_reason() {
        let mut j = job(JobStatus::Cancelling, JobTask::Batch, 5);
        j.status_reason = Some("cancelled by the owner".into());
        assert_eq!(settle(&j, &[run(0, JobRunStatus::Running, None)]), None);
        let d = settle(&j, &[run(0, JobRunStatus::Failed, None)]).unwrap();
        assert_eq!((d.to, d.reason.as_deref()), (JobStatus::Cancelled, Some("cancelled by the owner")));
    }

    #[test]
    fn pending_and_terminal_jobs_are_left_alone() {
        for status in [JobStatus::Pending, JobStatus::Completed, JobStatus::Failed, JobStatus::Cancelled] {
            assert_eq!(settle(&job(status, JobTask::Batch, 3), &[run(0, JobRunStatus::Failed, None)]), None);
        }
    }

    #[test]
    fn only_the_latest_attempt_counts() {
        let j = job(JobStatus::Running, JobTask::Batch, 3);
        let runs = [run(0, JobRunStatus::Failed, None), run(1, JobRunStatus::Completed, None)];
        assert_eq!(settle(&j, &runs).unwrap().to, JobStatus::Completed);
    }
}
