//! The Gantry control plane: the HTTP API, the application layer behind it, and the
//! background tasks that keep state converging.
//!
//! Request path: [`api`] (axum handlers: extract, authorize, call the app layer,
//! convert) → [`app`] (business rules, no HTTP) → `gantry_store::Store`.
//! Authentication happens in one extractor ([`signed::Signed`]); errors of every
//! layer become HTTP responses in one place ([`error::ApiError`]).

pub mod api;
pub mod app;
pub mod background;
pub mod config;
pub mod error;
pub mod key_cache;
pub mod keyfile;
pub mod metrics;
pub mod signals;
pub mod signed;
pub mod state;
pub mod usage;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;

pub use config::ServerConfig;
use state::AppState;

/// A server that is listening. Dropping it does not stop it; call [`RunningServer::shutdown`].
pub struct RunningServer {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    /// The server's shared state (tests reach the store through it).
    pub state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish, flushes usage data.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await?
    }

    /// Waits until the server stops by itself (it only does on error).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await?
    }
}

/// Opens the store, binds the listener and starts serving. Returns once the server
/// is ready: `/healthz` answers 200 from this point on.
pub async fn start(config: ServerConfig) -> anyhow::Result<RunningServer> {
    std::fs::create_dir_all(&config.data_dir)?;
    let key = keyfile::load_or_create(&config.data_dir, config.server_key.as_deref())?;
    let store = gantry_store::open(&config.data_dir, config.database_url.as_deref()).await?;
    let state = Arc::new(AppState::new(store, gantry_auth::SecretBox::new(key), &config));
    app::gpu_registry::seed(&state).await?;
    app::recipes::seed(&state).await?;
    // A price for a name the registry does not know would silently never apply.
    for (name, _) in &state.billing.gpu_prices {
        if state.gpus.resolve(name).is_none() {
            tracing::warn!(%name, "--price-gpu names no GPU model in the registry; its GPUs get the default price");
        }
    }
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let local_addr = listener.local_addr()?;
    let app = api::router(state.clone());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let usage_task = usage::spawn_flusher(state.clone());
    let gpu_refresher = app::gpu_registry::spawn_refresher(state.clone());
    let mut reconcilers = background::spawn(state.clone());
    reconcilers.push(tokio::spawn(metrics::gauges::run(state.clone())));
    let served = state.clone();
    let task = tokio::spawn(async move {
        let state = served;
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await?;
        usage_task.abort();
        gpu_refresher.abort();
        for task in reconcilers {
            task.abort();
        }
        state.usage.flush(state.store.as_ref()).await;
        Ok(())
    });
    tracing::info!(%local_addr, backend = state.store.backend(), "gantry server ready");
    Ok(RunningServer { local_addr, state, stop: Some(stop_tx), task })
}
