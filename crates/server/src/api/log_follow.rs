//! `GET /v1/job-runs/{uuid}/logs?follow=true`: the stored output, then new output as
//! it arrives, until the run ends, on whichever instance the follower is connected to.
//!
//! **Positions, not guesses.** The store counts the bytes ever appended to a run
//! (`LogTail::appended_bytes`; the stored logs keep only the newest bytes), so a
//! follower knows exactly how much of the output it has shown (`shown`) and never
//! shows a byte twice or skips one it could still show:
//!
//! - output delivered to *this* instance arrives as a chunk that ends at a known
//!   position: the part past `shown` is shown (a chunk already shown, as when it was
//!   stored just before the follower read the store, is skipped);
//! - output delivered to *another* instance (several instances on one PostgreSQL)
//!   arrives as a notification naming the run (`crate::peers`), and the follower
//!   reads the new part from the store; so does a follower that fell behind its
//!   channel or sees a gap (chunks racing a store read);
//! - notifications are hints: every [`REREAD_EVERY`] the follower reads the store
//!   anyway, and it reads it a last time when the run ends, so a lost notification
//!   costs latency, never output.
//!
//! Output older than the stored logs (a fast writer outran a slow follower past the
//! store's limit) is replaced by one line saying how many bytes were skipped.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use gantry_store::LogTail;
use gantry_types::JobRunId;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::signals::LogNews;
use crate::state::AppState;

/// How often the follower checks whether the run ended.
const TICK: Duration = Duration::from_millis(500);
/// How often the follower reads the store even without news (lost notifications).
const REREAD_EVERY: Duration = Duration::from_secs(5);

struct Follower {
    state: Arc<AppState>,
    run: JobRunId,
    /// Bytes of the run's output shown so far.
    shown: u64,
    /// The stored output, not yet sent.
    first: Option<String>,
    news: broadcast::Receiver<LogNews>,
    tick: tokio::time::Interval,
    last_read: tokio::time::Instant,
    done: bool,
}

/// The stream: `tail` (read after subscribing to `news`), then what is new.
pub fn stream(
    state: Arc<AppState>,
    run: JobRunId,
    tail: LogTail,
    news: broadcast::Receiver<LogNews>,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> {
    let follower = Follower {
        state,
        run,
        shown: tail.appended_bytes,
        first: Some(tail.logs),
        news,
        tick: tokio::time::interval(TICK),
        last_read: tokio::time::Instant::now(),
        done: false,
    };
    futures_util::stream::unfold(follower, |mut f| async move {
        if let Some(first) = f.first.take().filter(|s| !s.is_empty()) {
            return Some((Ok(Bytes::from(first)), f));
        }
        if f.done {
            return None;
        }
        loop {
            let text = tokio::select! {
                news = f.news.recv() => match news {
                    Ok(LogNews::Chunk { end, text }) => match past(f.shown, end, &text) {
                        Past::Shown => continue,
                        Past::Rest(rest) => {
                            f.shown = end;
                            rest.to_owned()
                        }
                        Past::Gap => f.catch_up().await,
                    },
                    Ok(LogNews::Elsewhere) | Err(RecvError::Lagged(_)) => f.catch_up().await,
                    Err(RecvError::Closed) => return None,
                },
                _ = f.tick.tick() => {
                    let ended = match f.state.store.run_fetch(None, f.run).await {
                        Ok(r) => r.is_none_or(|r| r.run.status.is_terminal()),
                        Err(_) => false,
                    };
                    if ended {
                        // A run's last output is stored before it is marked ended.
                        f.done = true;
                        let rest = f.catch_up().await;
                        return (!rest.is_empty()).then(|| (Ok(Bytes::from(rest)), f));
                    }
                    if f.last_read.elapsed() < REREAD_EVERY {
                        continue;
                    }
                    f.catch_up().await
                }
            };
            if !text.is_empty() {
                return Some((Ok(Bytes::from(text)), f));
            }
        }
    })
}

impl Follower {
    /// What the store has past `shown` (empty when nothing, or the store failed:
    /// the next news or reread tries again).
    async fn catch_up(&mut self) -> String {
        self.last_read = tokio::time::Instant::now();
        match self.state.store.run_logs_tail(self.run).await {
            Ok(Some(tail)) => {
                let text = unseen(self.shown, &tail);
                self.shown = self.shown.max(tail.appended_bytes);
                text
            }
            Ok(None) => String::new(),
            Err(e) => {
                tracing::debug!(run = %self.run, error = %e, "reading new output for a follower failed");
                String::new()
            }
        }
    }
}

/// Where a chunk ending at `end` stands against `shown`.
#[derive(Debug, PartialEq)]
enum Past<'a> {
    /// All of it was shown.
    Shown,
    /// This part of it was not.
    Rest(&'a str),
    /// Output between `shown` and the chunk's start was not seen here.
    Gap,
}

fn past(shown: u64, end: u64, text: &str) -> Past<'_> {
    if end <= shown {
        return Past::Shown;
    }
    let start = end.saturating_sub(text.len() as u64);
    if start > shown {
        return Past::Gap;
    }
    // Positions fall between appended chunks, so on a char boundary; if not, the
    // store knows better.
    text.get(usize::try_from(shown - start).unwrap_or(usize::MAX)..).map_or(Past::Gap, Past::Rest)
}

/// The part of `tail` past byte `shown` of the output, with a note for what the store
/// no longer keeps.
fn unseen(shown: u64, tail: &LogTail) -> String {
    let missing = tail.appended_bytes.saturating_sub(shown);
    let kept = tail.logs.len() as u64;
    if missing <= kept {
        let mut from = tail.logs.len() - missing as usize;
        while !tail.logs.is_char_boundary(from) {
            from += 1;
        }
        return tail.logs[from..].to_owned();
    }
    format!("[gantry: {} bytes of output skipped: older than the {} bytes kept]\n{}", missing - kept, kept, tail.logs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_shows_only_what_is_past_the_position() {
        assert_eq!(past(10, 10, "abc"), Past::Shown);
        assert_eq!(past(10, 13, "abc"), Past::Rest("abc"));
        assert_eq!(past(11, 13, "abc"), Past::Rest("bc"));
        assert_eq!(past(5, 13, "abc"), Past::Gap, "bytes 5..10 came to another instance");
        assert_eq!(past(12, 13, "é"), Past::Gap, "inside a char: ask the store");
    }

    #[test]
    fn the_store_gives_what_was_not_shown_and_says_what_is_gone() {
        let tail = LogTail { logs: "cdéf".into(), appended_bytes: 7 };
        assert_eq!(unseen(7, &tail), "");
        assert_eq!(unseen(9, &tail), "", "ahead of a lagging read");
        assert_eq!(unseen(4, &tail), "éf");
        assert_eq!(unseen(5, &tail), "f", "never half a char");
        assert_eq!(unseen(2, &tail), "cdéf");
        assert_eq!(unseen(0, &tail), "[gantry: 2 bytes of output skipped: older than the 5 bytes kept]\ncdéf");
    }
}
