//! Property tests of the lifecycle rules: a simulated job lives through random run
//! outcomes, cancels and retries, with every transition decided by `settle`, and the
//! invariants are checked after each event.

use gantry_lifecycle::settle::{Decision, JobFacts, RunFacts, settle};
use gantry_types::job::{JobStatus, JobTask};
use gantry_types::job_run::JobRunStatus;
use proptest::prelude::*;

const ENDINGS: [JobRunStatus; 3] = [JobRunStatus::Completed, JobRunStatus::Failed, JobRunStatus::Cancelled];
const ANY_JOB: [JobStatus; 7] = JobStatus::ALL;
const ANY_RUN: [JobRunStatus; 6] = JobRunStatus::ALL;

/// One thing that can happen to a placed job.
#[derive(Clone, Debug)]
enum Event {
    /// Run `index` (modulo the gang) of the latest attempt ends with `ENDINGS[ending]`.
    RunEnds { index: usize, ending: usize },
    /// The owner cancels.
    Cancel,
    /// A settle call with nothing new (a duplicate report, the lifecycle sweep).
    Resettle,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        8 => (0usize..8, 0usize..3).prop_map(|(index, ending)| Event::RunEnds { index, ending }),
        1 => Just(Event::Cancel),
        2 => Just(Event::Resettle),
    ]
}

fn run_facts() -> impl Strategy<Value = RunFacts> {
    (0u32..4, 0usize..ANY_RUN.len(), proptest::option::of("[a-z ]{0,12}"))
        .prop_map(|(attempt, s, status_reason)| RunFacts { attempt, status: ANY_RUN[s], status_reason })
}

struct Sim {
    job: JobFacts,
    gang: usize,
    runs: Vec<RunFacts>,
    attempts_placed: i64,
}

impl Sim {
    /// The scheduler's part: a PENDING job gets a new attempt, one run per gang member.
    fn place_if_pending(&mut self) {
        if self.job.status == JobStatus::Pending {
            let attempt = u32::try_from(self.attempts_placed).unwrap();
            self.runs.extend((0..self.gang).map(|_| RunFacts {
                attempt,
                status: JobRunStatus::Running,
                status_reason: None,
            }));
            self.attempts_placed += 1;
            self.job.status = JobStatus::Running;
        }
    }

    fn latest_active(&self) -> bool {
        let last = self.runs.iter().map(|r| r.attempt).max();
        self.runs.iter().any(|r| Some(r.attempt) == last && !r.status.is_terminal())
    }

    fn apply(&mut self, d: Decision) {
        assert_eq!(d.from, self.job.status, "a decision is made from the current status");
        self.job.status = d.to;
        self.job.status_reason = d.reason;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A job in a terminal status is never moved, whatever its runs say; neither is a
    /// PENDING one (the scheduler moves those).
    #[test]
    fn terminal_and_pending_jobs_never_move(
        s in 0usize..ANY_JOB.len(),
        batch in any::<bool>(),
        retries in 0i64..5,
        runs in proptest::collection::vec(run_facts(), 0..8),
    ) {
        let status = ANY_JOB[s];
        let task = if batch { JobTask::Batch } else { JobTask::Persistent };
        let job = JobFacts { status, task, max_retry_count: retries, status_reason: None };
        let decision = settle(&job, &runs);
        if status.is_terminal() || status == JobStatus::Pending {
            prop_assert_eq!(decision, None);
        }
    }

    /// Whatever happens to a job's runs: no decision while a run of the latest attempt
    /// is active (a gang settles as one), a cancelled job never goes back to PENDING,
    /// at most `max_retry_count + 1` attempts are made, a terminal job stays terminal,
    /// and settling twice changes nothing.
    #[test]
    fn a_simulated_job_keeps_the_lifecycle_invariants(
        batch in any::<bool>(),
        retries in 0i64..4,
        gang in 1usize..4,
        events in proptest::collection::vec(event(), 1..60),
    ) {
        let task = if batch { JobTask::Batch } else { JobTask::Persistent };
        let mut sim = Sim {
            job: JobFacts { status: JobStatus::Pending, task, max_retry_count: retries, status_reason: None },
            gang,
            runs: vec![],
            attempts_placed: 0,
        };
        let mut cancelled = false;
        for event in events {
            sim.place_if_pending();
            let before = sim.job.status;
            match event {
                Event::RunEnds { index, ending } => {
                    let last = sim.runs.iter().map(|r| r.attempt).max().unwrap();
                    let members: Vec<usize> = (0..sim.runs.len()).filter(|&i| sim.runs[i].attempt == last).collect();
                    let run = &mut sim.runs[members[index % members.len()]];
                    if !run.status.is_terminal() {
                        run.status = ENDINGS[ending];
                    }
                }
                Event::Cancel => {
                    if !sim.job.status.is_terminal() {
                        sim.job.status = JobStatus::Cancelling;
                        sim.job.status_reason = Some("cancelled".into());
                        cancelled = true;
                    }
                }
                Event::Resettle => {}
            }
            let decision = settle(&sim.job, &sim.runs);
            if sim.latest_active() {
                prop_assert_eq!(&decision, &None, "decided while a gang member is still active");
            }
            if let Some(d) = decision {
                prop_assert!(!before.is_terminal(), "{:?} left the terminal status {:?}", d, before);
                if sim.job.status == JobStatus::Cancelling || cancelled {
                    prop_assert_eq!(d.to, JobStatus::Cancelled, "a cancelled job is never retried");
                }
                sim.apply(d);
                prop_assert_eq!(settle(&sim.job, &sim.runs), None, "settling is idempotent");
            }
            prop_assert!(sim.attempts_placed <= retries + 1, "{} attempts with {} retries", sim.attempts_placed, retries);
            if before.is_terminal() {
                prop_assert_eq!(sim.job.status, before, "a terminal job moved");
            }
        }
    }

    /// The retry choice on its own: PENDING exactly while attempts used ≤ retries.
    #[test]
    fn retries_never_exceed_max_retry_count(retries in 0i64..10, used in 1i64..12) {
        let (to, _) = gantry_lifecycle::settle::retry_or_fail(retries, used, "x".into());
        prop_assert_eq!(to == JobStatus::Pending, used <= retries);
    }
}
