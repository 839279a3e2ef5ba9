//! Typed IDs: one newtype per kind of resource, so a `JobId` can never be passed
//! where an `ApiKeyId` is expected. All are UUIDv7 (time-ordered, like upstream's
//! IDs), so B-tree indexes on them stay append-mostly.

use std::fmt;
use std::str::FromStr;

macro_rules! typed_uuid {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[derive(serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            /// A fresh, time-ordered (v7) ID.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                uuid::Uuid::parse_str(s).map(Self)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::Uuid,
                    )))
                    .into()
            }
        }
        impl utoipa::ToSchema for $name {}
    )*};
}

typed_uuid!(
    /// An account: the owner of jobs and API keys.
    AccountId,
    /// An API key (not its public key string).
    ApiKeyId,
    /// A job.
    JobId,
    /// One execution of a job on one node.
    JobRunId,
    /// A node (a machine running `gantry agent`).
    NodeId,
    /// A GPU model in the GPU registry.
    GpuModelId,
    /// A job recipe (a job template others may cook).
    RecipeId,
    /// A consumer profile (billing settings of one account).
    ConsumerProfileId,
    /// A ledger transaction (a balanced set of entries posted together).
    LedgerTransactionId,
    /// One entry (one account's side) of a ledger transaction.
    LedgerEntryId,
    /// A credit purchase.
    CreditPurchaseId,
    /// A webhook endpoint.
    WebhookId,
    /// One event's delivery to one webhook endpoint.
    WebhookDeliveryId,
);
