//! Container output on its way to the control plane.
//!
//! The daemon is asked for logs with timestamps; the newest timestamp seen is the
//! cursor: after a restart the agent asks again from the last cursor the control
//! plane acknowledged and skips lines at or before it, so output is neither lost nor
//! shipped twice. (stdout and stderr are stamped separately, so a line written within
//! microseconds of the cursor on the other stream could be skipped on such a replay;
//! within one stream nothing is skipped.) Output waits in a bounded buffer while the control plane cannot be
//! reached; when it overflows the oldest output goes and a note says how much.

/// Output not yet handed to the agent, newest kept.
#[derive(Debug, Default)]
pub struct LogBuffer {
    text: String,
    dropped: u64,
    /// Timestamp of the newest line ever appended.
    cursor: Option<String>,
}

impl LogBuffer {
    /// Appends one line (without its timestamp) stamped `ts`, keeping at most `max` bytes.
    pub fn push(&mut self, ts: Option<&str>, line: &str, max: usize) {
        self.text.push_str(line);
        // The cursor is the newest timestamp seen, not the last: stdout and stderr are
        // stamped separately, so lines can arrive slightly out of order.
        if let Some(ts) = ts
            && self.cursor.as_deref().is_none_or(|c| is_after(ts, c))
        {
            self.cursor = Some(ts.to_string());
        }
        if self.text.len() > max {
            // Drop whole lines where possible, so no line is left cut in half.
            let over = self.text.len() - max;
            let mut cut = self.text.as_bytes()[over..].iter().position(|b| *b == b'\n').map_or(over, |i| over + i + 1);
            while !self.text.is_char_boundary(cut) {
                cut += 1;
            }
            self.dropped += cut as u64;
            self.text.drain(..cut);
        }
    }

    /// Takes what is buffered (with a note if some was dropped) and the cursor it reaches.
    pub fn take(&mut self) -> (String, Option<String>) {
        let mut out = String::new();
        if self.dropped > 0 {
            out.push_str(&format!(
                "[gantry: {} bytes of output dropped while they could not be delivered]\n",
                self.dropped
            ));
            self.dropped = 0;
        }
        out.push_str(&std::mem::take(&mut self.text));
        (out, self.cursor.clone())
    }

    /// The newest timestamp appended.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }
}

/// Splits a daemon log line `2026-11-28T14:00:00.123456789Z text` into timestamp and text.
pub fn split_timestamp(line: &str) -> (Option<&str>, &str) {
    match line.split_once(' ') {
        Some((ts, rest)) if looks_like_timestamp(ts) => (Some(ts), rest),
        _ => (None, line),
    }
}

fn looks_like_timestamp(s: &str) -> bool {
    s.len() >= 20 && s.as_bytes()[4] == b'-' && s.as_bytes()[10] == b'T' && s.ends_with('Z')
}

/// Whether a line stamped `ts` comes after `cursor` (RFC 3339 with nanoseconds in
/// UTC, as the daemon writes them, compare correctly once the fractions are padded).
pub fn is_after(ts: &str, cursor: &str) -> bool {
    normalise(ts) > normalise(cursor)
}

fn normalise(ts: &str) -> String {
    let body = ts.trim_end_matches('Z');
    let (secs, frac) = body.split_once('.').unwrap_or((body, ""));
    format!("{secs}.{frac:0<9}")
}

/// The whole seconds of a timestamp since the epoch, for the daemon's `since`.
pub fn epoch_seconds(ts: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(ts).ok().map(|t| t.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_output_and_says_what_was_dropped() {
        let mut b = LogBuffer::default();
        b.push(Some("2026-01-01T00:00:00.1Z"), "first line\n", 16);
        b.push(Some("2026-01-01T00:00:00.2Z"), "second line\n", 16);
        let (text, cursor) = b.take();
        assert!(text.starts_with("[gantry: 11 bytes of output dropped"), "{text}");
        assert!(text.ends_with("dropped while they could not be delivered]\nsecond line\n"), "{text}");
        assert_eq!(cursor.as_deref(), Some("2026-01-01T00:00:00.2Z"));
        assert_eq!(b.take().0, "");
        // An earlier stamp (the other stream) is kept but does not move the cursor back.
        b.push(Some("2026-01-01T00:00:00.15Z"), "late stderr\n", 64);
        assert_eq!(b.take(), ("late stderr\n".to_string(), Some("2026-01-01T00:00:00.2Z".to_string())));
        // A cut inside a multi-byte character moves to the next boundary.
        b.push(None, "ééééé", 5);
        assert!(b.take().0.ends_with("éé"));
    }

    #[test]
    fn timestamps_split_and_compare() {
        let (ts, text) = split_timestamp("2026-11-28T14:00:00.123456789Z hello world\n");
        assert_eq!(ts, Some("2026-11-28T14:00:00.123456789Z"));
        assert_eq!(text, "hello world\n");
        assert_eq!(split_timestamp("no stamp\n"), (None, "no stamp\n"));
        assert!(is_after("2026-11-28T14:00:00.5Z", "2026-11-28T14:00:00.123456789Z"));
        assert!(!is_after("2026-11-28T14:00:00.1Z", "2026-11-28T14:00:00.100000000Z"));
        assert!(is_after("2026-11-28T14:00:01Z", "2026-11-28T14:00:00.999Z"));
        assert_eq!(epoch_seconds("1970-01-01T00:01:00.5Z"), Some(60));
    }
}
