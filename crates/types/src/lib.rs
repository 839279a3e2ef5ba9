//! Wire types of the Gantry API: every request and response body, typed IDs, the
//! error body, list envelopes and `filter[...]` parsing, and validation of what
//! clients send.
//!
//! **Architecture invariant:** this crate does no IO (no network, files, database or
//! clock). It is shared by the server, the store, the client and the CLI, so that one
//! definition of each object exists. Field names and JSON shapes follow the upstream
//! API (`shared/spec/create-job.txt`, `shared/spec/API.md` §3-§4) exactly; Gantry's
//! additions are marked as such in their docs.

pub mod account;
pub mod api_key;
pub mod billing;
pub mod docker_ref;
pub mod error;
pub mod event;
pub mod gpu;
pub mod ids;
pub mod job;
pub mod job_run;
pub mod limits;
pub mod list;
pub mod money;
pub mod node;
pub mod num;
pub mod permissions;
pub mod protocol;
pub mod recipe;
pub mod region;
pub mod time;
pub mod validate;
pub mod webhook;

pub use error::{ErrorBody, ErrorDetail, FieldError};
pub use ids::{
    AccountId, ApiKeyId, ConsumerProfileId, CreditPurchaseId, GpuModelId, JobId, JobRunId, LedgerEntryId,
    LedgerTransactionId, NodeId, RecipeId, WebhookDeliveryId, WebhookId,
};
pub use time::Timestamp;
