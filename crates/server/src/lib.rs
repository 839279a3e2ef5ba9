//! The Gantry control plane: the HTTP API, the application layer behind it, and the
//! background tasks that keep state converging.
//!
//! Request path: `api` (axum handlers: extract, authorize, call the app layer,
//! convert) → `app` (business rules, no HTTP; errors are `app::error::AppError`) →
//! `gantry_store::Store`. Authentication happens in one extractor (`signed::Signed`);
//! errors become HTTP responses in one place (`error::ApiError`). Every background
//! loop is started by `background::spawn`.
//!
//! **The public surface is this file.** The modules are private to the crate; the
//! CLI and the tests use only: [`start`] with a [`ServerConfig`] (and its
//! [`BillingConfig`], [`Timing`]), the [`RunningServer`] handle it returns,
//! [`openapi`], and [`admin`] (what `gantry admin` does without a signed request).

mod api;
mod app;
mod background;
mod config;
mod console;
mod error;
mod heartbeats;
mod key_cache;
mod keyfile;
mod metrics;
mod peers;
mod rate_limit;
pub mod request_log;
mod serve;
mod signals;
mod signed;
mod state;
mod usage;
mod waiting;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;

pub use app::error::{AppError, chain};
pub use app::quotas::Quotas;
pub use background::Timing;
pub use background::leader::LEASE_TTL;
pub use config::{BillingConfig, ServerConfig, WebhookConfig};
pub use rate_limit::RateLimits;
pub use serve::ConnectionLimits;
use state::AppState;

/// Operator operations that need no signed request: the first key of a fresh
/// deployment, credit grants, the server key. `gantry admin` calls them on a store it
/// opens itself (also while a server runs); tests call them to set up accounts.
pub mod admin {
    pub use crate::app::api_keys::{KeySpec, create_account, create_in};
    pub use crate::app::ledger::credit;
    pub use crate::app::recipes::Imported;
    pub use crate::keyfile::{
        KEY_FILE as SERVER_KEY_FILE, load_or_create as load_server_key, verify as verify_server_key,
    };

    /// Imports job recipes under the uuids they carry (`gantry admin recipes import`),
    /// checked exactly like `POST /v1/job-recipes` (GPU registry included).
    pub struct RecipeImporter {
        state: crate::state::AppState,
    }

    impl RecipeImporter {
        /// An importer writing to `store`, sealing secrets with `secrets`.
        pub fn new(store: std::sync::Arc<dyn gantry_store::Store>, secrets: gantry_auth::SecretBox) -> Self {
            let config = crate::ServerConfig::new(std::path::PathBuf::new(), ([127, 0, 0, 1], 0).into());
            Self { state: crate::state::AppState::new(store, secrets, &config) }
        }

        /// Creates or replaces one recipe (see `app::recipes::import`).
        pub async fn import(
            &self,
            owner: Option<gantry_types::AccountId>,
            req: gantry_types::recipe::RecipeRequest,
        ) -> Result<(gantry_types::recipe::JobRecipe, Imported), crate::AppError> {
            crate::app::recipes::import(&self.state, owner, req).await
        }
    }
}

/// The OpenAPI document of the signed API, as committed in `openapi/api.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api::openapi()
}

/// A server that is listening. Dropping it does not stop it; call [`RunningServer::shutdown`].
pub struct RunningServer {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    /// Whether it serves HTTPS (`ServerConfig::tls`).
    pub tls: bool,
    state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// `http://ADDR` or `https://ADDR`: the base URL on the bound address. Over TLS,
    /// clients must name a host the certificate carries; this one works when the
    /// certificate lists the address itself (`tls-selfsigned --host 127.0.0.1`).
    pub fn base_url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.local_addr)
    }

    /// The store the server uses (tests read and write records through it).
    pub fn store(&self) -> &Arc<dyn gantry_store::Store> {
        &self.state.store
    }

    /// The box encrypting secrets at rest with the server key (tests check what is stored).
    pub fn secrets(&self) -> &gantry_auth::SecretBox {
        &self.state.secrets
    }

    /// What relays verify this control plane's relay tokens with (`gantry server
    /// --relay` hands it to the relay it runs in process).
    pub fn relay_token_verifier(&self) -> gantry_relay::token::Verifier {
        self.state.relays.issuer.verifier()
    }

    /// How the relay `gantry server --relay` runs in process learns which of its runs
    /// ended: what `POST /v1/relays/ended-runs` answers, read here without a request.
    pub fn relay_ended_runs(&self) -> gantry_relay::reap::Ask {
        let state = self.state.clone();
        Arc::new(move |runs: Vec<uuid::Uuid>| {
            let state = state.clone();
            Box::pin(async move {
                let runs: Vec<gantry_types::JobRunId> = runs.into_iter().map(gantry_types::JobRunId).collect();
                let ended = app::runs::ended_among(&state, &runs).await.map_err(|e| e.to_string())?;
                Ok(ended.into_iter().map(|r| r.0).collect())
            })
        })
    }

    /// The reconcilers' timing this server runs with.
    pub fn timing(&self) -> Timing {
        self.state.scheduling.timing
    }

    /// Asks for a scheduler pass now (after writing jobs to the store directly).
    pub fn wake_scheduler(&self) {
        self.state.signals.wake_scheduler();
    }

    /// Posts the charge of an ended run as the billing reconciler would; returns whether
    /// this call posted it (charges are exactly once per run).
    pub async fn charge_run(&self, run: &gantry_store::RunRecord) -> Result<bool, AppError> {
        app::ledger::charge_run(&self.state, run).await
    }

    /// Recomputes the metrics gauges now, as the background refresh does every
    /// `ServerConfig::metrics_refresh_every` (tests show that a scrape alone never does).
    pub async fn refresh_metrics(&self) -> Result<(), AppError> {
        metrics::gauges::refresh(&self.state, true).await
    }

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
///
/// A PostgreSQL database that cannot be reached is waited for (see [`waiting`]):
/// meanwhile the address answers 503 and this returns once connected.
pub async fn start(mut config: ServerConfig) -> anyhow::Result<RunningServer> {
    std::fs::create_dir_all(&config.data_dir)?;
    let store = match gantry_store::open(&config.data_dir, config.database_url.as_deref()).await {
        Ok(store) => store,
        Err(e @ gantry_store::StoreError::Unreachable { .. }) => {
            let (store, served) = waiting::until_reachable(&config, e).await?;
            config.listen = served;
            store
        }
        Err(e) => return Err(e.into()),
    };
    start_with_store(config, store).await
}

/// [`start`] on a store the caller already opened from `config` (`gantry dev` opens
/// it once, for its keys and for the server).
pub async fn start_with_store(
    config: ServerConfig,
    store: Arc<dyn gantry_store::Store>,
) -> anyhow::Result<RunningServer> {
    std::fs::create_dir_all(&config.data_dir)?;
    // A bad certificate stops the server before it touches anything else.
    let tls = config.tls.as_ref().map(gantry_tls::acceptor).transpose()?;
    let key = keyfile::load_or_create(&config.data_dir, config.server_key.as_deref())?;
    let secrets = gantry_auth::SecretBox::new(key);
    keyfile::verify(store.as_ref(), &secrets).await?;
    let state = Arc::new(AppState::new(store, secrets, &config));
    app::gpu_registry::seed(&state).await?;
    app::recipes::seed(&state).await?;
    // A price for a name the registry does not know would silently never apply.
    for (name, _) in &state.billing.config.gpu_prices {
        if state.caches.gpus.resolve(name).is_none() {
            tracing::warn!(%name, "--price-gpu names no GPU model in the registry; its GPUs get the default price");
        }
    }
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let local_addr = listener.local_addr()?;
    let app = api::router(state.clone());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let leadership = background::leader::first_try(&state).await;
    let loops = background::spawn(state.clone(), leadership);
    let gauges = tokio::spawn(metrics::gauges::run(state.clone()));
    let served = state.clone();
    let connections = config.connections.clone();
    let serves_tls = tls.is_some();
    let task = tokio::spawn(async move {
        let state = served;
        serve::serve(listener, app, connections, tls, async {
            let _ = stop_rx.await;
        })
        .await?;
        loops.stop();
        gauges.abort();
        state.auth.usage.flush(state.store.as_ref()).await;
        state.heartbeats.flush(state.store.as_ref()).await;
        Ok(())
    });
    tracing::info!(%local_addr, tls = serves_tls, backend = state.store.backend(), "gantry server ready");
    Ok(RunningServer { local_addr, tls: serves_tls, state, stop: Some(stop_tx), task })
}
