//! Conformance checks for accounts (see the parent module).

use gantry_types::AccountId;

use super::{T0, assert_conflict};
use crate::{AccountRecord, Store};

/// Accounts round-trip; a duplicate uuid conflicts.
pub async fn account_create_fetch(store: &dyn Store) {
    let account = AccountRecord {
        uuid: AccountId::new(),
        name: "Acme Research".into(),
        email: Some("ops@acme.example".into()),
        created_at_ms: T0 + 1,
    };
    store.account_create(&account).await.unwrap();
    assert_eq!(store.account_fetch(account.uuid).await.unwrap(), Some(account.clone()));
    assert_eq!(store.account_fetch(AccountId::new()).await.unwrap(), None);
    let no_email = AccountRecord { uuid: AccountId::new(), email: None, ..account.clone() };
    store.account_create(&no_email).await.unwrap();
    assert_eq!(store.account_fetch(no_email.uuid).await.unwrap(), Some(no_email));
    assert_conflict(store.account_create(&account).await);
}
