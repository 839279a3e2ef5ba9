//! The application layer: business rules between the HTTP handlers and the store.
//! Nothing here knows HTTP; functions take the caller's account scope and typed
//! inputs and return wire types or [`error::AppError`]; `crate::error` alone turns
//! that into HTTP.

pub mod api_keys;
pub mod caller;
pub mod capacity;
pub mod error;
pub mod events;
pub mod gpu_registry;
pub mod jobs;
pub mod ledger;
pub mod nodes;
pub mod offers;
pub mod payments;
pub mod pricing;
pub mod profiles;
pub mod quotas;
pub mod recipes;
pub mod runs;
pub mod webhooks;
