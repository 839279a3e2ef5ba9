//! Accounts and the current user. Upstream's `GET /v1/users/me` returns at least
//! `email` and `uuid`, and a client then reads `/v1/accounts/{uuid}/balance` with that
//! uuid; Gantry has one user per account, so the user's `uuid` is the account's uuid.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::AccountId;
use crate::time::Timestamp;

/// `GET /v1/users/me`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct User {
    /// Always `user`.
    pub object: String,
    /// The user's (= the account's) ID.
    pub uuid: AccountId,
    /// The account the calling key belongs to.
    pub account_uuid: AccountId,
    /// Contact address, if one was given.
    pub email: Option<String>,
    /// Display name.
    pub name: String,
    /// Permissions of the key that made the request.
    pub permissions: Vec<String>,
    /// When the account was created.
    pub created_at: Timestamp,
}
