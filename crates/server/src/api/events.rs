//! `GET /v1/events`: the event log, as Server-Sent Events (the default) or as a JSON
//! long-poll for clients without SSE. Both resume exactly after an id (`after=`, or
//! SSE's `Last-Event-ID` header, which browsers' `EventSource` sends by itself on
//! reconnect); see `app::events` for who sees what.
//!
//! **SSE without a position** starts at the newest event (it tells what happens from
//! now on); **JSON without `after`** starts at the oldest event kept, so a script
//! can page through the retained log with `after=<last id>`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use gantry_types::event::{Event, EventType};
use gantry_types::list::ListResponse;
use gantry_types::{AccountId, ErrorBody, FieldError};
use serde::de::IgnoredAny;

use crate::app::error::AppError;
use crate::app::events::{self, DEFAULT_LIMIT, EventQuery, MAX_LIMIT, MAX_WAIT_MS};
use crate::error::ApiError;
use crate::signed::Signed;
use crate::state::AppState;

/// How often an idle SSE stream sends a comment line, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The SSE response header naming the id the stream starts after.
pub const START_HEADER: &str = "x-gantry-events-after";

/// Events an SSE stream reads from the store at a time.
const SSE_BATCH: u32 = 500;

/// The parsed query.
#[derive(Debug, Default)]
struct Params {
    json: bool,
    after: Option<i64>,
    wait_ms: u64,
    limit: u32,
    types: Vec<EventType>,
}

fn parse(query: &[(String, String)], headers: &HeaderMap) -> Result<Params, ApiError> {
    let mut p = Params { limit: DEFAULT_LIMIT, ..Params::default() };
    let mut errors = Vec::new();
    for (key, value) in query {
        let bad = |errors: &mut Vec<FieldError>, what: String| errors.push(FieldError::new(key.clone(), what));
        match key.as_str() {
            "format" => match value.as_str() {
                "json" => p.json = true,
                "sse" => p.json = false,
                other => bad(&mut errors, format!("must be sse or json, got {other:?}")),
            },
            "after" => match value.parse::<i64>() {
                Ok(n) if n >= 0 => p.after = Some(n),
                _ => bad(&mut errors, format!("must be an event id (an integer >= 0), got {value:?}")),
            },
            "wait_ms" => match value.parse::<u64>() {
                Ok(n) if n <= MAX_WAIT_MS => p.wait_ms = n,
                _ => bad(&mut errors, format!("must be milliseconds from 0 to {MAX_WAIT_MS}, got {value:?}")),
            },
            "limit" => match value.parse::<u32>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => p.limit = n,
                _ => bad(&mut errors, format!("must be 1-{MAX_LIMIT}, got {value:?}")),
            },
            "filter[type]" => match EventType::parse_list(value) {
                Ok(t) => p.types.extend(t),
                Err(e) => bad(&mut errors, e),
            },
            k if k.starts_with("filter[") => bad(&mut errors, "unknown filter; this endpoint filters on type".into()),
            _ => {}
        }
    }
    if p.after.is_none()
        && let Some(last) = headers.get("last-event-id")
    {
        match last.to_str().ok().and_then(|s| s.trim().parse::<i64>().ok()).filter(|n| *n >= 0) {
            Some(n) => p.after = Some(n),
            None => errors.push(FieldError::new("Last-Event-ID", "must be an event id (an integer >= 0)")),
        }
    }
    if !errors.is_empty() {
        return Err(AppError::Validation(errors).into());
    }
    Ok(p)
}

/// The event stream. SSE by default: each event is `id: <id>`, `event: <type>`,
/// `data: <event JSON>`; resume with `Last-Event-ID` or `after`. The response header
/// `X-Gantry-Events-After` names the id the stream starts after (resume from it if
/// the connection drops before the first event). With `format=json`,
/// a long-poll: the events after `after` (up to `limit`), waiting up to `wait_ms` for
/// the first one, in the list envelope (`page` is always 1, `total` the number
/// returned). A caller sees its own account's events (operators: their nodes');
/// keys with `jobs.read.all` see every account's.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(
        ("format" = Option<String>, Query, description = "sse (default) or json"),
        ("after" = Option<i64>, Query, description = "Resume after this event id (SSE: or the Last-Event-ID header). \
            Default: SSE from the newest event on, JSON from the oldest kept"),
        ("wait_ms" = Option<u64>, Query, description = "JSON only: wait up to this long (0-60000, default 0) for the first event"),
        ("limit" = Option<u32>, Query, description = "JSON only: at most this many events (1-500, default 100)"),
        ("filter[type]" = Option<String>, Query, description = "comma list of event types, e.g. job.status_changed"),
        ("Last-Event-ID" = Option<String>, Header, description = "SSE resume position (the last id received)"),
    ),
    responses(
        (status = 200, description = "Events: an SSE stream (text/event-stream), or with format=json the list envelope",
            content((ListResponse<Event> = "application/json"), (String = "text/event-stream"))),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
        (status = 410, description = "The id to resume after is older than the retention kept", body = ErrorBody),
    ))]
pub(super) async fn list_events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    req: Signed<IgnoredAny>,
) -> Result<Response, ApiError> {
    let params = parse(&req.query, &headers)?;
    let scope = events::scope(&req.caller);
    if params.json {
        let after = params.after.unwrap_or(0);
        events::check_resume(&state, after).await?;
        let query = EventQuery { after, types: params.types, limit: params.limit };
        let events = events::wait(&state, scope, &query, Duration::from_millis(params.wait_ms)).await?;
        let total = events.len() as u64;
        let body = ListResponse { data: events, page: 1, limit: params.limit, total };
        return Ok(axum::Json(body).into_response());
    }
    let after = match params.after {
        Some(after) => {
            events::check_resume(&state, after).await?;
            after
        }
        None => events::newest(&state).await?,
    };
    let query = EventQuery { after, types: params.types, limit: SSE_BATCH };
    let stream = sse_stream(state, scope, query);
    let mut response = Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response();
    // Where the stream starts: a client that loses the connection before the first
    // event resumes from here, not from "now" again.
    response.headers_mut().insert(START_HEADER, axum::http::HeaderValue::from(after));
    Ok(response)
}

/// Events as they come, forever (until the client goes away, which drops the stream).
fn sse_stream(
    state: Arc<AppState>,
    scope: Option<AccountId>,
    query: EventQuery,
) -> impl futures_util::Stream<Item = Result<SseEvent, Infallible>> {
    struct Tail {
        state: Arc<AppState>,
        scope: Option<AccountId>,
        query: EventQuery,
        ready: VecDeque<Event>,
    }
    let start = Tail { state, scope, query, ready: VecDeque::new() };
    futures_util::stream::unfold(start, |mut t| async move {
        loop {
            if let Some(event) = t.ready.pop_front() {
                let sse = to_sse(&event);
                return Some((Ok(sse), t));
            }
            match events::wait(&t.state, t.scope, &t.query, Duration::from_secs(3600)).await {
                Ok(batch) => {
                    if let Some(last) = batch.last() {
                        t.query.after = last.id;
                    }
                    t.ready.extend(batch);
                }
                Err(e) => {
                    // The store failed: end the stream; the client resumes from its last id.
                    tracing::warn!(error = %crate::app::error::chain(&e), "event stream ended by a store error");
                    return None;
                }
            }
        }
    })
}

fn to_sse(event: &Event) -> SseEvent {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    SseEvent::default().id(event.id.to_string()).event(event.event_type.as_str()).data(data)
}
