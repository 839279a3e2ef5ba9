//! The event stream (`GET /v1/events`): the JSON long-poll, and an SSE reader that
//! yields events one by one and remembers the last id, so a caller that loses the
//! connection resumes with [`EventStream::last_id`] and misses nothing.

use std::time::Duration;

use gantry_types::event::{Event, EventType};
use gantry_types::list::ListResponse;
use reqwest::Method;

use crate::{Client, ClientError, error_of};

/// Where a read starts and what it keeps.
#[derive(Clone, Debug, Default)]
pub struct EventsQuery {
    /// Events after this id (`None`: SSE from now on, JSON from the oldest kept).
    pub after: Option<i64>,
    /// Only these types (empty: all).
    pub types: Vec<EventType>,
}

impl EventsQuery {
    fn pairs(&self) -> Vec<(String, String)> {
        let mut q = Vec::new();
        if let Some(after) = self.after {
            q.push(("after".to_string(), after.to_string()));
        }
        if !self.types.is_empty() {
            let names: Vec<&str> = self.types.iter().map(|t| t.as_str()).collect();
            q.push(("filter[type]".to_string(), names.join(",")));
        }
        q
    }
}

/// An open SSE stream of events.
pub struct EventStream {
    response: reqwest::Response,
    buffer: Vec<u8>,
    last_id: Option<i64>,
}

impl EventStream {
    /// The id of the last event returned, or where the stream started before the
    /// first (resume after it).
    pub fn last_id(&self) -> Option<i64> {
        self.last_id
    }

    /// The next event; `Ok(None)` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<Event>, ClientError> {
        loop {
            if let Some(end) = frame_end(&self.buffer) {
                let frame: Vec<u8> = self.buffer.drain(..end.0 + end.1).collect();
                if let Some(event) = parse_frame(&frame[..end.0])? {
                    self.last_id = Some(event.id);
                    return Ok(Some(event));
                }
                continue; // a comment (keep-alive) or an empty frame
            }
            match self.response.chunk().await.map_err(ClientError::Http)? {
                Some(bytes) => self.buffer.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }
}

/// Where the first frame ends: (its length, the separator's length).
fn frame_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// The event of one SSE frame (its `data:` lines joined), if it has data.
fn parse_frame(frame: &[u8]) -> Result<Option<Event>, ClientError> {
    let text = String::from_utf8_lossy(frame);
    let data: Vec<&str> =
        text.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| d.strip_prefix(' ').unwrap_or(d)).collect();
    if data.is_empty() {
        return Ok(None);
    }
    let json = data.join("\n");
    serde_json::from_str(&json)
        .map(Some)
        .map_err(|e| ClientError::Decode { status: reqwest::StatusCode::OK, detail: format!("event frame: {e}") })
}

impl Client {
    /// `GET /v1/events?format=json`: the events after `query.after` (at most
    /// `limit`), waiting up to `wait` for the first one.
    pub async fn events(
        &self,
        query: &EventsQuery,
        wait: Duration,
        limit: u32,
    ) -> Result<ListResponse<Event>, ClientError> {
        let mut q = query.pairs();
        q.push(("format".to_string(), "json".to_string()));
        q.push(("wait_ms".to_string(), wait.as_millis().to_string()));
        q.push(("limit".to_string(), limit.to_string()));
        let resp = self
            .signed(Method::GET, "/v1/events", &q, None)
            .timeout(wait + Duration::from_secs(30))
            .send()
            .await
            .map_err(ClientError::Http)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(ClientError::Http)?;
        if !status.is_success() {
            return Err(error_of(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode { status, detail: e.to_string() })
    }

    /// `GET /v1/events` as Server-Sent Events: open until the server or the caller
    /// ends it. `last_event_id` is sent as the `Last-Event-ID` header (what browsers
    /// send on reconnect); `query.after` takes precedence over it on the server.
    pub async fn event_stream(
        &self,
        query: &EventsQuery,
        last_event_id: Option<i64>,
    ) -> Result<EventStream, ClientError> {
        let mut req = self
            .signed(Method::GET, "/v1/events", &query.pairs(), None)
            .header("Accept", "text/event-stream")
            // A stream may stay open for days: no overall deadline.
            .timeout(Duration::from_secs(365 * 24 * 3600));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let response = req.send().await.map_err(ClientError::Http)?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await.map_err(ClientError::Http)?;
            return Err(error_of(status, &bytes));
        }
        // The server names where the stream starts, so even a stream that drops before
        // its first event resumes exactly.
        let start = response
            .headers()
            .get("x-gantry-events-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok());
        Ok(EventStream { response, buffer: Vec::new(), last_id: start.or(query.after).or(last_event_id) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_on_blank_lines_and_comments_are_skipped() {
        let buf = b": keep-alive\n\nid: 3\nevent: job.created\ndata: {\"a\":1}\n\nrest";
        let (len, sep) = frame_end(buf).unwrap();
        assert!(parse_frame(&buf[..len]).unwrap().is_none());
        let rest = &buf[len + sep..];
        let (len2, _) = frame_end(rest).unwrap();
        // Not an Event: the decode error names the frame.
        assert!(parse_frame(&rest[..len2]).is_err());
    }
}
