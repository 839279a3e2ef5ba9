//! API keys: the public key and the encrypted secret a client signs requests with.

use async_trait::async_trait;
use gantry_types::list::{ApiKeyFilter, Paging};
use gantry_types::{AccountId, ApiKeyId};

use crate::sql::row::IntoRecord;
use crate::sql::row::row;
use crate::sql::{json_list, parse_uuid};
use crate::{Page, StoreError, StoreResult};

/// An API key as stored: the secret only in encrypted form.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiKeyRecord {
    /// ID.
    pub uuid: ApiKeyId,
    /// Owner.
    pub account_uuid: AccountId,
    /// Name.
    pub name: String,
    /// `pk_...` (unique).
    pub public_key: String,
    /// The secret, encrypted with the server key (`gantry_auth::SecretBox`).
    pub secret_encrypted: String,
    /// Permission strings.
    pub permissions: Vec<String>,
    /// IPs/CIDRs.
    pub allowed_ips: Vec<String>,
    /// Expiry, epoch ms.
    pub expires_at_ms: Option<i64>,
    /// Revoked?
    pub is_revoked: bool,
    /// Created, epoch ms.
    pub created_at_ms: i64,
    /// Last change, epoch ms.
    pub updated_at_ms: i64,
    /// Last signed request, epoch ms.
    pub last_used_at_ms: Option<i64>,
    /// Revocation time, epoch ms.
    pub deleted_at_ms: Option<i64>,
}

row! {
    /// An API key's columns.
    #[derive(Debug)]
    pub(crate) struct ApiKeyRow in "api_keys" (read, write) {
        uuid: String,
        account_uuid: String,
        name: String,
        public_key: String,
        secret_encrypted: String,
        permissions: String,
        allowed_ips: String,
        expires_at_ms: Option<i64>,
        is_revoked: bool,
        created_at_ms: i64,
        updated_at_ms: i64,
        last_used_at_ms: Option<i64>,
        deleted_at_ms: Option<i64>,
    }
}

impl ApiKeyRow {
    /// The columns of `k` (its lists as JSON).
    pub(crate) fn new(k: &ApiKeyRecord) -> Self {
        Self {
            uuid: k.uuid.to_string(),
            account_uuid: k.account_uuid.to_string(),
            name: k.name.clone(),
            public_key: k.public_key.clone(),
            secret_encrypted: k.secret_encrypted.clone(),
            permissions: json_list(&k.permissions),
            allowed_ips: json_list(&k.allowed_ips),
            expires_at_ms: k.expires_at_ms,
            is_revoked: k.is_revoked,
            created_at_ms: k.created_at_ms,
            updated_at_ms: k.updated_at_ms,
            last_used_at_ms: k.last_used_at_ms,
            deleted_at_ms: k.deleted_at_ms,
        }
    }
}

impl IntoRecord for ApiKeyRow {
    type Record = ApiKeyRecord;

    /// Parses the uuids and JSON lists.
    fn into_record(self) -> StoreResult<ApiKeyRecord> {
        let corrupt = |detail: String| StoreError::Corrupt { table: "api_keys", detail };
        let list = |what: &str, text: &str| -> StoreResult<Vec<String>> {
            serde_json::from_str(text)
                .map_err(|e| corrupt(format!("{what} of key {} is not a JSON string list: {e}", self.uuid)))
        };
        Ok(ApiKeyRecord {
            uuid: ApiKeyId(parse_uuid(&self.uuid).map_err(corrupt)?),
            account_uuid: AccountId(parse_uuid(&self.account_uuid).map_err(corrupt)?),
            permissions: list("permissions", &self.permissions)?,
            allowed_ips: list("allowed_ips", &self.allowed_ips)?,
            name: self.name,
            public_key: self.public_key,
            secret_encrypted: self.secret_encrypted,
            expires_at_ms: self.expires_at_ms,
            is_revoked: self.is_revoked,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            last_used_at_ms: self.last_used_at_ms,
            deleted_at_ms: self.deleted_at_ms,
        })
    }
}

/// API keys in the store.
#[async_trait]
pub trait ApiKeyStore {
    /// Creates an API key; `Conflict` on a duplicate public key, `MissingReference`
    /// when the account does not exist.
    async fn api_key_create(&self, key: &ApiKeyRecord) -> StoreResult<()>;
    /// Fetches a key by its public key (revoked and expired ones included).
    async fn api_key_fetch_by_public_key(&self, public_key: &str) -> StoreResult<Option<ApiKeyRecord>>;
    /// Lists keys, newest first unless `paging` says otherwise.
    async fn api_key_list(
        &self,
        account: Option<AccountId>,
        filter: &ApiKeyFilter,
        paging: Paging,
    ) -> StoreResult<Page<ApiKeyRecord>>;
    /// Revokes a key (idempotent: an already revoked key is returned unchanged).
    /// `None` when it does not exist in scope.
    async fn api_key_revoke(
        &self,
        account: Option<AccountId>,
        id: ApiKeyId,
        now_ms: i64,
    ) -> StoreResult<Option<ApiKeyRecord>>;
    /// Records when keys were last used: (key, epoch ms) pairs, applied only when
    /// newer than what is stored. Batched by the caller; best effort for the API.
    async fn api_key_touch(&self, uses: &[(ApiKeyId, i64)]) -> StoreResult<()>;
}
