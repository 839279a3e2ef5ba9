//! Starting while the database cannot be reached: the instance retries the
//! connection with backoff, logging each failure, and meanwhile serves its address
//! with `503`s (`/healthz` says why), so a load balancer or an orchestrator sees an
//! instance that is up but not ready, rather than a refused port or a crash loop.
//!
//! Only an unreachable database (refused, timed out, unresolved name) is waited for;
//! a bad URL or refused credentials fail the start at once, since waiting would not
//! fix them. Once connected, this placeholder stops and the real server binds the
//! same address (`crate::start`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use gantry_store::{Store, StoreError};

use crate::ServerConfig;

/// The first wait between two attempts; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// Retries opening `config`'s store after `first` (an unreachable database) until it
/// opens, serving 503s on `config.listen` meanwhile. Returns the store and the address
/// the placeholder served (the real server binds it again).
pub(crate) async fn until_reachable(
    config: &ServerConfig,
    first: StoreError,
) -> anyhow::Result<(Arc<dyn Store>, SocketAddr)> {
    let tls = config.tls.as_ref().map(gantry_tls::acceptor).transpose()?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let local_addr = listener.local_addr()?;
    let reason = Arc::new(Mutex::new(describe(&first)));
    let router = axum::Router::new()
        .route("/healthz", axum::routing::get(healthz))
        .fallback(unavailable)
        .with_state(reason.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let placeholder = tokio::spawn(crate::serve::serve(listener, router, config.connections.clone(), tls, async {
        let _ = stopped.await;
    }));
    let mut backoff = FIRST_BACKOFF;
    let mut error = first;
    let opened = loop {
        tracing::warn!(
            %local_addr,
            database = %gantry_store::database_url::redacted(config.database_url.as_deref().unwrap_or_default()),
            error = %crate::chain(&error),
            retry_in_secs = backoff.as_secs(),
            "cannot reach the database; retrying (/healthz answers 503 until connected)"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        match gantry_store::open(&config.data_dir, config.database_url.as_deref()).await {
            Ok(store) => break Ok(store),
            Err(e @ StoreError::Unreachable { .. }) => {
                *reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = describe(&e);
                error = e;
            }
            Err(e) => break Err(e),
        }
    };
    let _ = stop.send(());
    placeholder.await??;
    let store = opened?;
    tracing::info!("connected to the database");
    Ok((store, local_addr))
}

fn describe(e: &StoreError) -> String {
    format!("waiting for the database: {}", crate::chain(e))
}

async fn healthz(State(reason): State<Arc<Mutex<String>>>) -> impl IntoResponse {
    let reason = reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let body = serde_json::json!({
        "status": "unavailable",
        "version": env!("CARGO_PKG_VERSION"),
        "backend": "postgres",
        "reason": reason,
    });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body))
}

async fn unavailable() -> impl IntoResponse {
    let body = gantry_types::ErrorBody {
        error: gantry_types::ErrorDetail {
            code: "unavailable".into(),
            message:
                "this instance is starting and cannot reach its database yet; retry shortly or use another instance"
                    .into(),
            details: vec![],
        },
    };
    (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "5")], Json(body))
}
