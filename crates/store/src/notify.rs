//! Notifications between control-plane instances sharing one database: "node X's
//! desired state changed", "a job is waiting for the scheduler", "key K was revoked".
//!
//! They are hints that save latency, never data: every consumer rereads the store
//! when told, and also on its own timer, so a lost notification costs time, not
//! correctness. PostgreSQL carries them with LISTEN/NOTIFY (delivered in commit order
//! to every connected listener; a listener whose connection dropped is told to
//! resync, since it may have missed some). SQLite has one instance and no other
//! process to tell, so sending is a no-op and there is nothing to listen to.

use async_trait::async_trait;

use crate::StoreResult;

/// What a notification is about; each is its own channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Payload: node uuids whose desired state changed.
    NodeDesired,
    /// Payload: empty; jobs or capacity appeared, the scheduler should run.
    Schedule,
    /// Payload: public keys revoked (or changed) that caches must drop.
    KeyRevoked,
    /// Payload: job run uuids with new output stored.
    Logs,
}

impl Topic {
    /// Every topic.
    pub const ALL: [Topic; 4] = [Topic::NodeDesired, Topic::Schedule, Topic::KeyRevoked, Topic::Logs];

    /// The PostgreSQL channel name.
    pub fn channel(self) -> &'static str {
        match self {
            Topic::NodeDesired => "gantry_node_desired",
            Topic::Schedule => "gantry_schedule",
            Topic::KeyRevoked => "gantry_key_revoked",
            Topic::Logs => "gantry_logs",
        }
    }

    fn from_channel(channel: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.channel() == channel)
    }
}

/// What a listener receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A notification as sent.
    Message {
        /// Its topic.
        topic: Topic,
        /// Its payload (at most [`MAX_PAYLOAD`] bytes).
        payload: String,
    },
    /// The listener was disconnected and may have missed notifications: treat
    /// everything as changed.
    Resync,
}

/// The largest payload one notification carries (PostgreSQL's limit is 8000 bytes).
pub const MAX_PAYLOAD: usize = 7_900;

/// Sending and receiving notifications.
#[async_trait]
pub trait NotifyStore {
    /// Sends `payload` on `topic` to every instance listening (this one included).
    async fn notify(&self, topic: Topic, payload: &str) -> StoreResult<()>;

    /// Starts listening to every topic; `None` when the backend has no other
    /// instances to hear from (SQLite). The receiver ends when the store closes.
    async fn listen(&self) -> StoreResult<Option<tokio::sync::mpsc::Receiver<Notice>>>;
}

/// Parses a PostgreSQL notification (channel and payload) into a [`Notice`].
pub(crate) fn notice(channel: &str, payload: &str) -> Option<Notice> {
    Topic::from_channel(channel).map(|topic| Notice::Message { topic, payload: payload.to_string() })
}
