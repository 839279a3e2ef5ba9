//! API keys: creation (secret returned once), listing, revocation, and the first
//! account and key of a fresh deployment (`gantry admin create-key`).
//!
//! A key may only grant permissions its creator holds, so a consumer key cannot
//! mint an admin key; and (operators aside) a key it creates is no broader than
//! itself: its `allowed_ips` lie within the creator's and it expires no later.

use gantry_auth::{SecretBox, allow_list_within, generate_key_pair, parse_allow_list};
use gantry_store::{AccountRecord, ApiKeyRecord, Page, Store};
use gantry_types::api_key::{ApiKey, CreateApiKeyRequest};
use gantry_types::list::{ApiKeyFilter, Paging};
use gantry_types::permissions::{Preset, Scope, check_permission, may_grant, scope_for};
use gantry_types::{AccountId, ApiKeyId, FieldError, Timestamp};

use crate::app::caller::Caller;
use crate::app::error::AppError;
use crate::state::{AppState, now_ms};

/// A validated key request.
#[derive(Clone, Debug)]
pub struct KeySpec {
    /// Name.
    pub name: String,
    /// Permission strings.
    pub permissions: Vec<String>,
    /// IPs/CIDRs.
    pub allowed_ips: Vec<String>,
    /// Expiry, epoch ms.
    pub expires_at_ms: Option<i64>,
}

/// Checks a create-key body.
pub fn validate(req: CreateApiKeyRequest, now_ms: i64) -> Result<KeySpec, Vec<FieldError>> {
    let mut errors = Vec::new();
    let name = req.name.unwrap_or_default();
    if name.trim().is_empty() {
        errors.push(FieldError::new("name", "is required"));
    } else if name.len() > 256 {
        errors.push(FieldError::new("name", "must be at most 256 bytes"));
    }
    let mut permissions = Vec::new();
    match (req.permissions, req.preset.as_deref()) {
        (Some(list), None) if !list.is_empty() => {
            for (i, p) in list.iter().enumerate() {
                if let Err(e) = check_permission(p) {
                    errors.push(FieldError::new(format!("permissions[{i}]"), e));
                }
            }
            permissions = list;
        }
        (None, Some(preset)) => match Preset::parse(preset) {
            Some(p) => permissions = p.permissions(),
            None => errors.push(FieldError::new("preset", "must be consumer, node, admin or relay")),
        },
        (Some(_), Some(_)) => errors.push(FieldError::new("preset", "give permissions or preset, not both")),
        _ => errors.push(FieldError::new("permissions", "at least one permission (or a preset) is required")),
    }
    let allowed_ips = req.allowed_ips.unwrap_or_default();
    for (i, ip) in allowed_ips.iter().enumerate() {
        if !gantry_types::validate::is_ip_or_cidr(ip) {
            errors.push(FieldError::new(format!("allowed_ips[{i}]"), format!("not an IP address or CIDR: {ip:?}")));
        }
    }
    let expires_at_ms = match req.expires_at.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => match Timestamp::parse(text) {
            Some(t) if t.0 > now_ms => Some(t.0),
            Some(_) => {
                errors.push(FieldError::new("expires_at", "must be in the future"));
                None
            }
            None => {
                errors.push(FieldError::new("expires_at", "must be an RFC 3339 date-time or null"));
                None
            }
        },
    };
    if errors.is_empty() { Ok(KeySpec { name, permissions, allowed_ips, expires_at_ms }) } else { Err(errors) }
}

/// Creates a key in the caller's account.
pub async fn create(state: &AppState, caller: &Caller, spec: KeySpec) -> Result<ApiKey, AppError> {
    let held = &caller.key.record.permissions;
    if let Some(p) = spec.permissions.iter().find(|p| !may_grant(held, p)) {
        return Err(AppError::Forbidden {
            code: "permission_escalation",
            message: format!("cannot grant {p}: a key may only grant permissions it holds itself"),
        });
    }
    if scope_for(held, "api_keys", "create") != Some(Scope::All) {
        no_broader_than_creator(&caller.key.record, &caller.key.allowed_ips, &spec)?;
    }
    create_in(state.store.as_ref(), &state.secrets, caller.account(), spec).await
}

/// A key may not outlive or out-reach the key that creates it: otherwise a key pinned
/// to one address and expiring soon could mint an unpinned, eternal one. Operators
/// (`api_keys.create.all`) are exempt: they mint keys for others.
fn no_broader_than_creator(
    creator: &ApiKeyRecord,
    creator_ips: &[ipnet::IpNet],
    spec: &KeySpec,
) -> Result<(), AppError> {
    let escalation = |message: String| AppError::Forbidden { code: "permission_escalation", message };
    let wanted = parse_allow_list(&spec.allowed_ips)
        .map_err(|(i, message)| AppError::field(format!("allowed_ips[{i}]"), message))?;
    match allow_list_within(&wanted, creator_ips) {
        Ok(()) => {}
        Err(None) => {
            return Err(escalation(format!(
                "allowed_ips must be given and lie within this key's own ({}): a key may not create a key usable from more addresses than itself",
                creator.allowed_ips.join(", ")
            )));
        }
        Err(Some(i)) => {
            return Err(escalation(format!(
                "allowed_ips[{i}] {:?} is not within this key's own allowed_ips ({})",
                spec.allowed_ips[i],
                creator.allowed_ips.join(", ")
            )));
        }
    }
    if let Some(limit) = creator.expires_at_ms
        && spec.expires_at_ms.is_none_or(|wanted| wanted > limit)
    {
        return Err(escalation(format!(
            "expires_at must be given and no later than this key's own expiry ({}): a key may not create a key that outlives it",
            Timestamp(limit).to_rfc3339()
        )));
    }
    Ok(())
}

/// Creates a key in `account` without a caller (the admin CLI). Returns the key
/// with its secret: the only time the secret is shown.
pub async fn create_in(
    store: &dyn Store,
    secrets: &SecretBox,
    account: AccountId,
    spec: KeySpec,
) -> Result<ApiKey, AppError> {
    let (public_key, secret_key) = generate_key_pair();
    let now = now_ms();
    let record = ApiKeyRecord {
        uuid: ApiKeyId::new(),
        account_uuid: account,
        name: spec.name,
        public_key,
        secret_encrypted: secrets.encrypt(&secret_key),
        permissions: spec.permissions,
        allowed_ips: spec.allowed_ips,
        expires_at_ms: spec.expires_at_ms,
        is_revoked: false,
        created_at_ms: now,
        updated_at_ms: now,
        last_used_at_ms: None,
        deleted_at_ms: None,
    };
    store.api_key_create(&record).await?;
    let mut key = view(record);
    key.secret_key = Some(secret_key);
    Ok(key)
}

/// Creates an account (the admin CLI's first step on a fresh deployment).
pub async fn create_account(store: &dyn Store, name: &str, email: Option<String>) -> Result<AccountRecord, AppError> {
    let account = AccountRecord { uuid: AccountId::new(), name: name.to_string(), email, created_at_ms: now_ms() };
    store.account_create(&account).await?;
    Ok(account)
}

/// Lists keys; `.own` callers see their account's only.
pub async fn list(
    state: &AppState,
    scope: Option<AccountId>,
    mut filter: ApiKeyFilter,
    paging: Paging,
) -> Result<Page<ApiKey>, AppError> {
    if scope.is_some() && filter.account_uuid.is_some_and(|a| Some(a) != scope) {
        // Another account's keys: for an .own caller that is simply an empty list.
        return Ok(Page { items: vec![], total: 0 });
    }
    let scope = scope.or(filter.account_uuid.take());
    let page = state.store.api_key_list(scope, &filter, paging).await?;
    Ok(Page { items: page.items.into_iter().map(view).collect(), total: page.total })
}

/// Revokes a key (idempotent) and evicts it from the cache at once.
pub async fn revoke(state: &AppState, scope: Option<AccountId>, id: ApiKeyId) -> Result<ApiKey, AppError> {
    let record =
        state.store.api_key_revoke(scope, id, now_ms()).await?.ok_or_else(|| AppError::not_found("api key", id))?;
    state.auth.keys.evict(&record.public_key);
    state.signals.key_revoked(&record.public_key);
    Ok(view(record))
}

/// The wire object of a stored key, never with its secret.
pub fn view(r: ApiKeyRecord) -> ApiKey {
    ApiKey {
        object: "api_key".into(),
        id: r.uuid,
        uuid: r.uuid,
        name: r.name,
        public_key: r.public_key,
        secret_key: None,
        permissions: r.permissions,
        allowed_ips: r.allowed_ips,
        account: r.account_uuid,
        account_uuid: r.account_uuid,
        is_revoked: r.is_revoked,
        expires_at: r.expires_at_ms.map(Timestamp),
        last_used_at: r.last_used_at_ms.map(Timestamp),
        deleted_at: r.deleted_at_ms.map(Timestamp),
        created_at: Timestamp(r.created_at_ms),
        updated_at: Timestamp(r.updated_at_ms),
    }
}
