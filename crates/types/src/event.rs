//! Events (Gantry's addition to the upstream API): what happened, in the order it
//! was committed, for `GET /v1/events` (SSE and JSON long-poll) and webhooks.
//!
//! An event is appended to the store's event log in the same transaction as the
//! change it describes, so the log never tells of a change that did not happen, nor
//! misses one that did. `id` increases in commit order per deployment, so a reader
//! that saw `id = N` resumes with `after=N` and gets exactly what followed.
//! `data` is the object as the API shows it, with secrets and `env` values redacted
//! (events go to webhooks and logs, never only to the owner).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::AccountId;
use crate::time::Timestamp;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    /// A job was created (`data`: the job).
    #[serde(rename = "job.created")]
    JobCreated,
    /// A job's status changed (`data`: the job after).
    #[serde(rename = "job.status_changed")]
    JobStatusChanged,
    /// A run of a job was placed on a node (`data`: the run).
    #[serde(rename = "job_run.created")]
    JobRunCreated,
    /// A run's status changed (`data`: the run after).
    #[serde(rename = "job_run.status_changed")]
    JobRunStatusChanged,
    /// A node registered, or registered again (`data`: the node).
    #[serde(rename = "node.registered")]
    NodeRegistered,
    /// A node's status changed, e.g. ONLINE -> LOST (`data`: the node after).
    #[serde(rename = "node.status_changed")]
    NodeStatusChanged,
    /// An account's balance moved (`data`: the ledger entry: amount and kind).
    #[serde(rename = "balance.changed")]
    BalanceChanged,
}

impl EventType {
    /// Every type, in a stable order.
    pub const ALL: [Self; 7] = [
        Self::JobCreated,
        Self::JobStatusChanged,
        Self::JobRunCreated,
        Self::JobRunStatusChanged,
        Self::NodeRegistered,
        Self::NodeStatusChanged,
        Self::BalanceChanged,
    ];

    /// The wire name (`job.created`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JobCreated => "job.created",
            Self::JobStatusChanged => "job.status_changed",
            Self::JobRunCreated => "job_run.created",
            Self::JobRunStatusChanged => "job_run.status_changed",
            Self::NodeRegistered => "node.registered",
            Self::NodeStatusChanged => "node.status_changed",
            Self::BalanceChanged => "balance.changed",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// Parses a comma-separated list of wire names (`filter[type]`, webhook `events`);
    /// the error names the unknown one and lists the known ones.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, String> {
        let mut out = Vec::new();
        for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let t = Self::parse(name).ok_or_else(|| unknown(name))?;
            if !out.contains(&t) {
                out.push(t);
            }
        }
        Ok(out)
    }
}

/// The error for an unknown event type name.
pub fn unknown(name: &str) -> String {
    let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
    format!("unknown event type {name:?} (one of {})", known.join(", "))
}

/// One event (`GET /v1/events`, webhook bodies).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Always `event`.
    pub object: String,
    /// Position in the deployment's log: increases in commit order; resume with
    /// `after=<id>` (or SSE `Last-Event-ID`).
    pub id: i64,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// When the change happened.
    pub created_at: Timestamp,
    /// The account the event belongs to (a job's or run's owner, a node's operator).
    pub account_uuid: AccountId,
    /// The object as the API returns it, secrets redacted.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// `balance.changed`'s `data`: one account's side of a ledger posting (the shape of
/// a ledger line, `GET /v1/compute/ledger/transactions`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BalanceChange {
    /// Always `balance_change`.
    pub object: String,
    /// Whose balance moved.
    pub account_uuid: AccountId,
    /// The ledger transaction.
    #[schema(value_type = String, format = Uuid)]
    pub transaction_uuid: crate::LedgerTransactionId,
    /// What happened.
    pub kind: crate::billing::LedgerKind,
    /// USD; positive adds to the balance.
    pub amount: f64,
    /// The same, exact.
    pub amount_micros: i64,
    /// Always `USD`.
    pub currency: String,
    /// The run billed, for run charges.
    pub job_run_uuid: Option<crate::JobRunId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde_and_parse() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), serde_json::json!(t.as_str()));
        }
        assert_eq!(EventType::parse_list("job.created, job.created,node.registered").unwrap().len(), 2);
        assert!(EventType::parse_list("job.made").unwrap_err().contains("job.made"));
    }
}
