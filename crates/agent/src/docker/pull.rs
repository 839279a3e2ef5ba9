//! Image pulls: shared between runs, with progress, and with failures said plainly.
//!
//! Two runs that need the same image with the same credentials wait on one pull
//! ([`PullHub`]): the first request starts it in its own task, later ones subscribe
//! to its progress. The pull belongs to no run, so a run that is cancelled while
//! waiting does not abort the download another run still needs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::watch;

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    /// Registry host (`registry.gitlab.com`, `127.0.0.1:5000`).
    pub host: Option<String>,
    /// User name.
    pub user: String,
    /// Password or token.
    pub secret: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth").field("host", &self.host).field("user", &self.user).finish_non_exhaustive()
    }
}

/// Where a pull is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullState {
    /// Downloading: bytes so far of the bytes known so far (layers announce their
    /// size as they start, so the total grows).
    Pulling {
        /// Downloaded.
        done: u64,
        /// Known total.
        total: u64,
    },
    /// Finished: the image is present, or why it is not (for people).
    Done(Result<(), String>),
}

/// Reports progress of one pull.
pub type Progress = Box<dyn Fn(u64, u64) + Send + Sync>;

/// Something that can pull an image (the Docker daemon; a counter in tests).
#[async_trait]
pub trait Puller: Send + Sync + 'static {
    /// Pulls `reference`; calls `progress(done, total)` as bytes arrive.
    async fn pull(&self, reference: &str, auth: Option<&RegistryAuth>, progress: Progress) -> Result<(), String>;
}

type Key = (String, Option<(Option<String>, String, String)>);

/// Deduplicates concurrent pulls of the same image and credentials.
pub struct PullHub<P: Puller> {
    puller: Arc<P>,
    inflight: Arc<Mutex<HashMap<Key, watch::Receiver<PullState>>>>,
}

impl<P: Puller> PullHub<P> {
    /// A hub pulling through `puller`.
    pub fn new(puller: Arc<P>) -> Self {
        Self { puller, inflight: Arc::default() }
    }

    /// Joins the pull of `reference` in flight, or starts one. Credentials are part
    /// of the key: a run never rides on a pull authorised by someone else's secret.
    pub fn pull(&self, reference: &str, auth: Option<&RegistryAuth>) -> watch::Receiver<PullState> {
        let key: Key = (reference.to_string(), auth.map(|a| (a.host.clone(), a.user.clone(), a.secret.clone())));
        let mut inflight = self.inflight.lock().expect("pull hub poisoned");
        if let Some(rx) = inflight.get(&key) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(PullState::Pulling { done: 0, total: 0 });
        inflight.insert(key.clone(), rx.clone());
        let puller = self.puller.clone();
        let table = self.inflight.clone();
        let reference = reference.to_string();
        let auth = auth.cloned();
        tokio::spawn(async move {
            let tx = Arc::new(tx);
            let progress_tx = tx.clone();
            let progress: Progress = Box::new(move |done, total| {
                progress_tx.send_replace(PullState::Pulling { done, total });
            });
            let result = puller.pull(&reference, auth.as_ref(), progress).await;
            // Forget the pull before announcing the end, so a request arriving after
            // a failure starts a fresh attempt instead of inheriting the failure.
            table.lock().expect("pull hub poisoned").remove(&key);
            tx.send_replace(PullState::Done(result));
        });
        rx
    }
}

/// Waits until the pull ends, calling `on_progress` as it moves.
pub async fn finish(mut rx: watch::Receiver<PullState>, mut on_progress: impl FnMut(u64, u64)) -> Result<(), String> {
    loop {
        let state = rx.borrow_and_update().clone();
        match state {
            PullState::Done(result) => return result,
            PullState::Pulling { done, total } => on_progress(done, total),
        }
        if rx.changed().await.is_err() {
            // The sender is gone without a final state only if its task panicked.
            return match rx.borrow().clone() {
                PullState::Done(result) => result,
                PullState::Pulling { .. } => Err("image pull stopped unexpectedly".into()),
            };
        }
    }
}

/// Turns what the daemon said about a failed pull into a reason a user can act on.
pub fn explain_pull_error(reference: &str, host: Option<&str>, message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    let registry = host.map(str::to_string).unwrap_or_else(|| registry_of(reference));
    if ["unauthorized", "authentication required", "no basic auth credentials", "denied", "incorrect username"]
        .iter()
        .any(|m| lower.contains(m))
    {
        format!(
            "image pull failed: registry {registry} rejected the credentials for {reference} (check user and secret): {message}"
        )
    } else if ["manifest unknown", "not found", "does not exist", "no such image", "name unknown"]
        .iter()
        .any(|m| lower.contains(m))
    {
        format!("image pull failed: image {reference} not found in registry {registry}: {message}")
    } else if [
        "connection refused",
        "no such host",
        "dial tcp",
        "i/o timeout",
        "timeout",
        "network is unreachable",
        "eof",
        "tls",
    ]
    .iter()
    .any(|m| lower.contains(m))
    {
        format!("image pull failed: registry {registry} unreachable: {message}")
    } else {
        format!("image pull failed for {reference}: {message}")
    }
}

/// The registry a reference points at (`docker.io` when it names none).
pub fn registry_of(reference: &str) -> String {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first.to_string(),
        _ => "docker.io".to_string(),
    }
}

/// Formats bytes for progress lines.
pub fn human_bytes(bytes: u64) -> String {
    const MB: f64 = 1024.0 * 1024.0;
    if bytes as f64 >= 1024.0 * MB {
        format!("{:.2} GB", bytes as f64 / (1024.0 * MB))
    } else {
        format!("{:.1} MB", bytes as f64 / MB)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::Notify;

    use super::*;

    #[derive(Default)]
    struct Counting {
        calls: AtomicUsize,
        release: Notify,
    }

    #[async_trait]
    impl Puller for Counting {
        async fn pull(&self, reference: &str, _: Option<&RegistryAuth>, progress: Progress) -> Result<(), String> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            progress(5, 10);
            self.release.notified().await;
            if reference.contains("missing") { Err("manifest unknown".into()) } else { Ok(()) }
        }
    }

    fn auth(secret: &str) -> RegistryAuth {
        RegistryAuth { host: Some("r".into()), user: "u".into(), secret: secret.into() }
    }

    #[tokio::test]
    async fn identical_concurrent_pulls_share_one_download() {
        let puller = Arc::new(Counting::default());
        let hub = PullHub::new(puller.clone());
        let a = hub.pull("img:1", Some(&auth("s")));
        let b = hub.pull("img:1", Some(&auth("s")));
        let other_secret = hub.pull("img:1", Some(&auth("t")));
        let other_image = hub.pull("img:2", Some(&auth("s")));
        let mut seen = Vec::new();
        let waiting = tokio::spawn(finish(a, move |d, t| seen.push((d, t))));
        tokio::task::yield_now().await;
        while puller.calls.load(Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
        puller.release.notify_waiters();
        assert_eq!(waiting.await.unwrap(), Ok(()));
        assert_eq!(finish(b, |_, _| {}).await, Ok(()));
        assert_eq!(finish(other_secret, |_, _| {}).await, Ok(()));
        assert_eq!(finish(other_image, |_, _| {}).await, Ok(()));
        assert_eq!(puller.calls.load(Ordering::SeqCst), 3, "same image and credentials pulled once");
    }

    #[tokio::test]
    async fn a_failed_pull_is_not_inherited_by_the_next_request() {
        let puller = Arc::new(Counting::default());
        let hub = PullHub::new(puller.clone());
        let first = hub.pull("missing:1", None);
        while puller.calls.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        puller.release.notify_waiters();
        assert_eq!(finish(first, |_, _| {}).await, Err("manifest unknown".into()));
        let second = hub.pull("missing:1", None);
        while puller.calls.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        puller.release.notify_waiters();
        assert!(finish(second, |_, _| {}).await.is_err());
    }

    #[test]
    fn pull_errors_say_which_failure() {
        let r = "127.0.0.1:5000/t/img:1";
        assert!(
            explain_pull_error(r, None, "unauthorized: authentication required").contains("rejected the credentials")
        );
        assert!(explain_pull_error(r, None, "manifest for x not found: manifest unknown").contains("not found"));
        assert!(
            explain_pull_error(r, None, "Get \"http://127.0.0.1:1/v2/\": dial tcp: connection refused")
                .contains("unreachable")
        );
        assert!(explain_pull_error(r, None, "something else").contains("image pull failed for"));
        assert_eq!(registry_of(r), "127.0.0.1:5000");
        assert_eq!(registry_of("library/busybox:1"), "docker.io");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MB");
    }
}
