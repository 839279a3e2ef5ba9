//! Conformance checks for notifications between instances (see the parent module).

use std::time::Duration;

use crate::Store;
use crate::notify::{Notice, Topic};

/// Every listener gets every notification, in the order sent; a backend without
/// other instances (SQLite) has nothing to listen to and sending is harmless.
pub async fn notifications_reach_every_listener_in_order(store: &dyn Store) {
    let Some(mut first) = store.listen().await.unwrap() else {
        store.notify(Topic::Schedule, "").await.unwrap();
        return;
    };
    let mut second = store.listen().await.unwrap().expect("a second instance listens too");
    store.notify(Topic::NodeDesired, "a,b").await.unwrap();
    store.notify(Topic::Schedule, "").await.unwrap();
    store.notify(Topic::KeyRevoked, "pk_x").await.unwrap();
    let expected = vec![
        Notice::Message { topic: Topic::NodeDesired, payload: "a,b".into() },
        Notice::Message { topic: Topic::Schedule, payload: String::new() },
        Notice::Message { topic: Topic::KeyRevoked, payload: "pk_x".into() },
    ];
    for rx in [&mut first, &mut second] {
        let mut got = Vec::new();
        while got.len() < expected.len() {
            let next = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("delivered in time");
            got.push(next.expect("listening"));
        }
        assert_eq!(got, expected);
    }
}
