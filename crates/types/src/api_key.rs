//! API keys (API.md §4.8). The secret is returned once, in the create response;
//! every later read omits it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{AccountId, ApiKeyId};
use crate::time::Timestamp;

/// The api_key object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    /// Always `api_key`.
    pub object: String,
    /// Upstream's Mongo-style id; equal to `uuid`.
    #[serde(rename = "_id")]
    pub id: ApiKeyId,
    /// The key's ID.
    pub uuid: ApiKeyId,
    /// Name given at creation.
    pub name: String,
    /// `pk_...`, sent as `X-API-Key`.
    pub public_key: String,
    /// `sk_...`: present only in the create response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    /// Scoped permission strings.
    pub permissions: Vec<String>,
    /// Source IPs/CIDRs the key may be used from; empty = any.
    pub allowed_ips: Vec<String>,
    /// Owning account (upstream names both).
    pub account: AccountId,
    /// Owning account.
    pub account_uuid: AccountId,
    /// Revoked keys are refused.
    pub is_revoked: bool,
    /// Null = never expires.
    pub expires_at: Option<Timestamp>,
    /// Last time the key signed a request (updated at most every few seconds).
    pub last_used_at: Option<Timestamp>,
    /// When it was revoked.
    pub deleted_at: Option<Timestamp>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// `POST /v1/api-keys` body.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateApiKeyRequest {
    /// Required, non-empty.
    pub name: Option<String>,
    /// Required unless `preset` is given: scoped strings such as `jobs.read.own`.
    pub permissions: Option<Vec<String>>,
    /// Gantry addition: `consumer` or `node` instead of listing permissions.
    pub preset: Option<String>,
    /// IPs/CIDRs; empty or absent = any origin.
    pub allowed_ips: Option<Vec<String>>,
    /// RFC 3339; null = never.
    pub expires_at: Option<String>,
}
