//! A signed client for the Gantry API (and the upstream API it mirrors).
//!
//! Used by the CLI and by the integration tests, so the tests exercise exactly what
//! users run. Every request is signed with a fresh nonce and timestamp; retries are
//! left to callers, and must re-sign (nonces are single-use).
//!
//! **Several control-plane instances.** `base_url` may list several instances,
//! comma-separated (`http://cp1:8080,http://cp2:8080`). The client uses one at a time
//! and moves to the next when a request to it fails in transport (refused, reset,
//! timed out) or answers 502/503/504; a request whose connection was refused never
//! reached a server, so it is re-sent (re-signed) to the next instance at once. Any
//! other failure is returned, and the next request goes to the next instance: an agent
//! whose instance died is back within its next sync.
//!
//! Over `https://` the server's certificate is verified against the system's roots
//! ([`Client::new`]) or against one CA file only ([`Client::with_ca_cert`], what
//! `--ca-cert` and `GANTRY_CA_CERT` give the CLI and the agent). A certificate that
//! does not verify is [`ClientError::Untrusted`], whose message says what to do.

use std::path::Path;
mod events;
mod webhooks;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gantry_types::account::User;
use gantry_types::api_key::{ApiKey, CreateApiKeyRequest};
use gantry_types::billing::{
    Balance, ComputeOffer, ConsumerProfile, CreditPurchase, CreditPurchaseCreated, LedgerTransaction,
};
use gantry_types::job::{CancelJobRequest, Job};
use gantry_types::job_run::JobRun;
use gantry_types::list::ListResponse;
use gantry_types::recipe::JobRecipe;
use gantry_types::{ApiKeyId, ErrorBody, JobId, JobRunId, RecipeId};
use reqwest::Method;
pub use reqwest::StatusCode;
use serde::de::DeserializeOwned;

pub use events::{EventStream, EventsQuery};

/// The error of a failed response: the API's error body, or what came instead.
pub(crate) fn error_of(status: StatusCode, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => ClientError::Api { status, body },
        Err(_) => ClientError::Decode { status, detail: String::from_utf8_lossy(bytes).into_owned() },
    }
}

/// Where and as whom to connect.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// e.g. `http://127.0.0.1:8080` (no trailing `/v1`).
    pub base_url: String,
    /// `pk_...`.
    pub public_key: String,
    /// `sk_...`.
    pub secret_key: String,
}

/// Environment variable prefixes honoured, in order: Gantry's own, then the two
/// families upstream clients use.
pub const ENV_PREFIXES: [&str; 3] = ["GANTRY", "DISPERSED", "ZER"];

impl Credentials {
    /// Reads `<PREFIX>_PUBLIC_KEY`, `<PREFIX>_SECRET_KEY` and `<PREFIX>_API_BASE_URL`
    /// for the prefixes in [`ENV_PREFIXES`]; the first set variable of each wins.
    /// `DISPERSED_API` (what some upstream clients call the base URL) comes last.
    pub fn from_env() -> Result<Self, ClientError> {
        let get = |suffix: &str| {
            ENV_PREFIXES.iter().find_map(|p| std::env::var(format!("{p}_{suffix}")).ok().filter(|v| !v.is_empty()))
        };
        let missing = |what: &str| {
            ClientError::MissingCredentials(format!(
                "{what} is not set: export GANTRY_{what} (or DISPERSED_{what}); `gantry admin create-key` prints a key"
            ))
        };
        Ok(Self {
            public_key: get("PUBLIC_KEY").ok_or_else(|| missing("PUBLIC_KEY"))?,
            secret_key: get("SECRET_KEY").ok_or_else(|| missing("SECRET_KEY"))?,
            base_url: get("API_BASE_URL")
                .or_else(|| std::env::var("DISPERSED_API").ok().filter(|v| !v.is_empty()))
                .unwrap_or_else(|| "http://127.0.0.1:8080".into()),
        })
    }
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{status}: {}", describe(body))]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// The error body.
        body: ErrorBody,
    },
    /// The request did not complete.
    #[error("cannot reach the Gantry API")]
    Http(#[source] reqwest::Error),
    /// The server's TLS certificate did not verify against the trusted roots.
    #[error("the server's TLS certificate is not trusted ({detail}): {hint}")]
    Untrusted {
        /// What rustls said.
        detail: String,
        /// What to do about it.
        hint: &'static str,
        /// The failed request.
        #[source]
        source: reqwest::Error,
    },
    /// The CA file given to [`Client::with_ca_cert`] is unusable.
    #[error("cannot use the CA certificate file")]
    Tls(#[source] gantry_tls::TlsError),
    /// The server answered something that is not what this client understands.
    #[error("unexpected response ({status}): {detail}")]
    Decode {
        /// HTTP status.
        status: StatusCode,
        /// What was wrong.
        detail: String,
    },
    /// No credentials configured.
    #[error("{0}")]
    MissingCredentials(String),
}

impl From<reqwest::Error> for ClientError {
    /// A failed request: [`ClientError::Untrusted`] when the cause is a certificate
    /// rustls refused, else [`ClientError::Http`].
    fn from(e: reqwest::Error) -> Self {
        match refused_certificate(&e) {
            Some((detail, hint)) => Self::Untrusted { detail, hint, source: e },
            None => Self::Http(e),
        }
    }
}

/// The certificate error somewhere in `e`'s cause chain. `io::Error`'s `source()`
/// skips the error it wraps (and hyper-rustls nests one `io::Error` in another), so
/// a wrapped error is followed directly.
fn refused_certificate(e: &(dyn std::error::Error + 'static)) -> Option<(String, &'static str)> {
    use rustls::CertificateError as E;
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(tls @ rustls::Error::InvalidCertificate(why)) = err.downcast_ref::<rustls::Error>() {
            let hint = match why {
                E::NotValidForName | E::NotValidForNameContext { .. } => {
                    "it does not name the host in the URL; use a name it carries, or make one with \
                     `gantry admin tls-selfsigned --host NAME`"
                }
                E::Expired | E::ExpiredContext { .. } | E::NotValidYet | E::NotValidYetContext { .. } => {
                    "check this machine's clock, or renew the server's certificate"
                }
                _ => {
                    "pass --ca-cert FILE (or set GANTRY_CA_CERT) naming the CA that signed it, e.g. the \
                     ca.pem of `gantry admin tls-selfsigned`"
                }
            };
            return Some((tls.to_string(), hint));
        }
        next = match err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

fn describe(body: &ErrorBody) -> String {
    let mut out = format!("{} ({})", body.error.message, body.error.code);
    for d in &body.error.details {
        out.push_str(&format!("\n  {}: {}", d.field, d.message));
    }
    out
}

impl ClientError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Api { status, .. } | Self::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A signed API client. Cheap to clone (clones share which instance is in use).
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    creds: Credentials,
    endpoints: Arc<Endpoints>,
}

/// The control-plane instances of `Credentials::base_url`, and the one in use.
#[derive(Debug)]
struct Endpoints {
    urls: Vec<String>,
    current: AtomicUsize,
}

impl Endpoints {
    fn parse(base_url: &str) -> Self {
        let mut urls: Vec<String> =
            base_url.split(',').map(|u| u.trim().trim_end_matches('/').to_string()).filter(|u| !u.is_empty()).collect();
        if urls.is_empty() {
            urls.push(base_url.trim_end_matches('/').to_string());
        }
        Self { urls, current: AtomicUsize::new(0) }
    }

    /// The instance in use: its index (for [`Endpoints::failed`]) and base URL.
    fn current(&self) -> (usize, &str) {
        let i = self.current.load(Ordering::Relaxed) % self.urls.len();
        (i, &self.urls[i])
    }

    /// Moves on from instance `i` (unless a concurrent request already did).
    fn failed(&self, i: usize) {
        let next = (i + 1) % self.urls.len();
        let _ = self.current.compare_exchange(i, next, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// Answers that mean "this instance cannot serve now; another may".
fn instance_unavailable(status: StatusCode) -> bool {
    matches!(status, StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT)
}

/// A raw response, for callers that inspect statuses themselves (tests, tools).
#[derive(Clone, Debug)]
pub struct RawResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// Body parsed as JSON (`Null` when empty or not JSON).
    pub body: serde_json::Value,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Client {
    /// A client for these credentials; `https://` servers are verified against the
    /// system's roots.
    pub fn new(creds: Credentials) -> Self {
        let http = Self::http().build().expect("reqwest client builds");
        let endpoints = Arc::new(Endpoints::parse(&creds.base_url));
        Self { http, creds, endpoints }
    }

    /// A client for these credentials that trusts, over `https://`, only the CA
    /// certificates in `ca_cert` (PEM; the system's roots otherwise).
    pub fn with_ca_cert(creds: Credentials, ca_cert: Option<&Path>) -> Result<Self, ClientError> {
        let Some(path) = ca_cert else { return Ok(Self::new(creds)) };
        let certs = gantry_tls::read_certificates(path).map_err(ClientError::Tls)?;
        let roots = certs
            .iter()
            .map(|der| reqwest::Certificate::from_der(der))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ClientError::Http)?;
        let http = Self::http().tls_certs_only(roots).build().map_err(ClientError::Http)?;
        let endpoints = Arc::new(Endpoints::parse(&creds.base_url));
        Ok(Self { http, creds, endpoints })
    }

    fn http() -> reqwest::ClientBuilder {
        reqwest::Client::builder().timeout(Duration::from_secs(60)).pool_max_idle_per_host(256)
    }

    /// The base URL of the instance requests go to now (the first of `base_url`'s
    /// list until one fails).
    pub fn current_base_url(&self) -> &str {
        self.endpoints.current().1
    }

    /// The credentials in use.
    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }

    /// A signed request, ready to send (tests use it to read response headers).
    pub fn signed(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&serde_json::Value>,
    ) -> reqwest::RequestBuilder {
        self.signed_to(self.endpoints.current().1, method, path, query, body)
    }

    fn signed_to(
        &self,
        base_url: &str,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&serde_json::Value>,
    ) -> reqwest::RequestBuilder {
        let signed = gantry_auth::sign_request(
            &self.creds.public_key,
            &self.creds.secret_key,
            method.as_str(),
            path,
            query,
            body,
            now_ms(),
        );
        let mut url = format!("{base_url}{path}");
        if !signed.query.is_empty() {
            url.push('?');
            url.push_str(&signed.query);
        }
        let mut req = self
            .http
            .request(method, url)
            .header("X-API-Key", &signed.api_key)
            .header("X-Time", &signed.time)
            .header("X-Nonce", &signed.nonce)
            .header("X-Signature", &signed.signature)
            .header("Accept", "application/json");
        if let Some(bytes) = signed.body {
            req = req.header("Content-Type", "application/json").body(bytes);
        }
        req
    }

    /// Signs and sends one request; returns the status and JSON body whatever the status.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<RawResponse, ClientError> {
        let (used, resp) =
            self.send_with_failover(|base| self.signed_to(base, method.clone(), path, query, body)).await?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| {
            self.endpoints.failed(used);
            ClientError::from(e)
        })?;
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Ok(RawResponse { status, body })
    }

    /// Sends the request `build` makes for the instance in use; on a refused
    /// connection, rebuilds (re-signs) it for each other instance in turn. Any failure
    /// or unavailable answer moves the client to the next instance. Returns the index
    /// of the instance that answered with its response.
    async fn send_with_failover(
        &self,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<(usize, reqwest::Response), ClientError> {
        let mut tries = self.endpoints.urls.len();
        loop {
            let (i, base) = self.endpoints.current();
            tries -= 1;
            match build(base).send().await {
                Ok(resp) => {
                    if instance_unavailable(resp.status()) {
                        self.endpoints.failed(i);
                    }
                    return Ok((i, resp));
                }
                Err(e) => {
                    self.endpoints.failed(i);
                    // A certificate no instance of this control plane would change.
                    if !(e.is_connect() && tries > 0) || refused_certificate(&e).is_some() {
                        return Err(ClientError::from(e));
                    }
                }
            }
        }
    }

    /// Like [`Client::send_raw`], with `headers` set after the signing ones (replacing
    /// e.g. `Accept`), and `Content-Type: application/json` on a request without a
    /// body when `json_without_body`: what some clients send. The status, the
    /// `Content-Type` and the raw body come back whatever they are.
    pub async fn send_raw_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        headers: &[(&str, &str)],
        json_without_body: bool,
    ) -> Result<(StatusCode, Option<String>, Vec<u8>), ClientError> {
        let (_, resp) = self
            .send_with_failover(|base| {
                let mut req = self.signed_to(base, method.clone(), path, &[], body);
                if json_without_body && body.is_none() {
                    req = req.header("Content-Type", "application/json");
                }
                for (name, value) in headers {
                    req = req.header(*name, *value);
                }
                req
            })
            .await?;
        let status = resp.status();
        let content_type =
            resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = resp.bytes().await.map_err(ClientError::from)?;
        Ok((status, content_type, bytes.to_vec()))
    }

    /// `GET /v1/job-runs/{uuid}/logs`: the run's output as a streaming response; with
    /// `follow` it stays open, sending output as it arrives, until the run ends. Read
    /// it with [`reqwest::Response::chunk`].
    pub async fn run_logs(&self, id: JobRunId, follow: bool) -> Result<reqwest::Response, ClientError> {
        let query = if follow { vec![("follow".to_string(), "true".to_string())] } else { vec![] };
        let (_, resp) = self
            .send_with_failover(|base| {
                self.signed_to(base, Method::GET, &format!("/v1/job-runs/{id}/logs"), &query, None)
                    // A followed run may go on for days: no overall deadline.
                    .timeout(Duration::from_secs(365 * 24 * 3600))
            })
            .await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let bytes = resp.bytes().await.map_err(ClientError::from)?;
        Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => ClientError::Api { status, body },
            Err(_) => ClientError::Decode { status, detail: String::from_utf8_lossy(&bytes).into_owned() },
        })
    }

    /// `GET /v1/job-runs` with paging/filter pairs.
    pub async fn list_job_runs(&self, query: &[(String, String)]) -> Result<ListResponse<JobRun>, ClientError> {
        self.send(Method::GET, "/v1/job-runs", query, None).await
    }

    /// The runs of one job, oldest attempt first, by rank.
    pub async fn runs_of_job(&self, job: JobId) -> Result<Vec<JobRun>, ClientError> {
        let query = vec![("filter[job_uuid]".to_string(), job.to_string()), ("limit".to_string(), "50".to_string())];
        let mut runs = self.list_job_runs(&query).await?.data;
        runs.sort_by_key(|r| (r.attempt, r.rank));
        Ok(runs)
    }

    /// `GET /v1/job-runs/{uuid}`, with logs.
    pub async fn get_job_run(&self, id: JobRunId) -> Result<JobRun, ClientError> {
        self.send(Method::GET, &format!("/v1/job-runs/{id}"), &[], None).await
    }

    /// Signs and sends; decodes a success body as `T`, an error body as [`ClientError::Api`].
    pub async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<T, ClientError> {
        let raw = self.send_raw(method, path, query, body).await?;
        if !raw.status.is_success() {
            return Err(match serde_json::from_value::<ErrorBody>(raw.body.clone()) {
                Ok(body) => ClientError::Api { status: raw.status, body },
                Err(_) => ClientError::Decode { status: raw.status, detail: raw.body.to_string() },
            });
        }
        serde_json::from_value(raw.body).map_err(|e| ClientError::Decode { status: raw.status, detail: e.to_string() })
    }

    /// `POST /v1/jobs` with a create-job body (upstream shape).
    pub async fn create_job(&self, body: &serde_json::Value) -> Result<Job, ClientError> {
        self.send(Method::POST, "/v1/jobs", &[], Some(body)).await
    }

    /// `GET /v1/jobs` with paging/filter pairs (`("filter[status]", "PENDING")`).
    pub async fn list_jobs(&self, query: &[(String, String)]) -> Result<ListResponse<Job>, ClientError> {
        self.send(Method::GET, "/v1/jobs", query, None).await
    }

    /// `GET /v1/jobs/{uuid}`.
    pub async fn get_job(&self, id: JobId) -> Result<Job, ClientError> {
        self.send(Method::GET, &format!("/v1/jobs/{id}"), &[], None).await
    }

    /// `PUT /v1/jobs/{uuid}/cancel`.
    pub async fn cancel_job(&self, id: JobId, reason: &str) -> Result<Job, ClientError> {
        let body = serde_json::to_value(CancelJobRequest { reason: Some(reason.to_string()) }).expect("serializes");
        self.send(Method::PUT, &format!("/v1/jobs/{id}/cancel"), &[], Some(&body)).await
    }

    /// `POST /v1/api-keys`.
    pub async fn create_api_key(&self, req: &CreateApiKeyRequest) -> Result<ApiKey, ClientError> {
        let body = serde_json::to_value(req).expect("serializes");
        self.send(Method::POST, "/v1/api-keys", &[], Some(&body)).await
    }

    /// `GET /v1/api-keys`.
    pub async fn list_api_keys(&self, query: &[(String, String)]) -> Result<ListResponse<ApiKey>, ClientError> {
        self.send(Method::GET, "/v1/api-keys", query, None).await
    }

    /// `DELETE /v1/api-keys/{uuid}`.
    pub async fn revoke_api_key(&self, id: ApiKeyId) -> Result<ApiKey, ClientError> {
        self.send(Method::DELETE, &format!("/v1/api-keys/{id}"), &[], None).await
    }

    /// `POST /v1/nodes/register` (node agents).
    pub async fn register_node(
        &self,
        req: &gantry_types::node::RegisterNodeRequest,
    ) -> Result<gantry_types::protocol::Registration, ClientError> {
        let body = serde_json::to_value(req).expect("serializes");
        self.send(Method::POST, "/v1/nodes/register", &[], Some(&body)).await
    }

    /// `POST /v1/nodes/{uuid}/sync` (node agents): heartbeat, report, long-poll.
    pub async fn sync_node(
        &self,
        node: gantry_types::NodeId,
        req: &gantry_types::protocol::SyncRequest,
    ) -> Result<gantry_types::protocol::DesiredState, ClientError> {
        let body = serde_json::to_value(req).expect("serializes");
        self.send(Method::POST, &format!("/v1/nodes/{node}/sync"), &[], Some(&body)).await
    }

    /// `GET /v1/job-recipes` with paging/filter pairs (`("filter[is_official]", "true")`).
    pub async fn list_recipes(&self, query: &[(String, String)]) -> Result<ListResponse<JobRecipe>, ClientError> {
        self.send(Method::GET, "/v1/job-recipes", query, None).await
    }

    /// `GET /v1/job-recipes/{uuid}`.
    pub async fn get_recipe(&self, id: RecipeId) -> Result<JobRecipe, ClientError> {
        self.send(Method::GET, &format!("/v1/job-recipes/{id}"), &[], None).await
    }

    /// `POST /v1/job-recipes` (`name`, `payload`, optional `visibility`, `input_schema`, ...).
    pub async fn create_recipe(&self, body: &serde_json::Value) -> Result<JobRecipe, ClientError> {
        self.send(Method::POST, "/v1/job-recipes", &[], Some(body)).await
    }

    /// `PATCH /v1/job-recipes/{uuid}`: the fields sent replace.
    pub async fn update_recipe(&self, id: RecipeId, body: &serde_json::Value) -> Result<JobRecipe, ClientError> {
        self.send(Method::PATCH, &format!("/v1/job-recipes/{id}"), &[], Some(body)).await
    }

    /// `DELETE /v1/job-recipes/{uuid}`: returns the recipe as it was.
    pub async fn delete_recipe(&self, id: RecipeId) -> Result<JobRecipe, ClientError> {
        self.send(Method::DELETE, &format!("/v1/job-recipes/{id}"), &[], None).await
    }

    /// `POST /v1/job-recipes/{uuid}/fork` (optional body `{name, visibility}`).
    pub async fn fork_recipe(&self, id: RecipeId, body: Option<&serde_json::Value>) -> Result<JobRecipe, ClientError> {
        self.send(Method::POST, &format!("/v1/job-recipes/{id}/fork"), &[], body).await
    }

    /// `POST /v1/job-recipes/{uuid}/cook`: overrides of the template plus `inputs`;
    /// `{}` cooks it as is. Returns the job created.
    pub async fn cook_recipe(&self, id: RecipeId, body: &serde_json::Value) -> Result<Job, ClientError> {
        self.send(Method::POST, &format!("/v1/job-recipes/{id}/cook"), &[], Some(body)).await
    }

    /// `GET /v1/users/me`.
    pub async fn me(&self) -> Result<User, ClientError> {
        self.send(Method::GET, "/v1/users/me", &[], None).await
    }

    /// `GET /v1/relays/token-key` (a `relay` key): what relay tokens verify with.
    pub async fn relay_token_key(&self) -> Result<gantry_types::protocol::RelayTokenKey, ClientError> {
        self.send(Method::GET, "/v1/relays/token-key", &[], None).await
    }

    /// `POST /v1/relays/ended-runs` (a `relay` key): which of `runs` ended.
    pub async fn relay_ended_runs(
        &self,
        runs: &[gantry_types::JobRunId],
    ) -> Result<gantry_types::protocol::EndedRuns, ClientError> {
        let body = serde_json::json!({ "runs": runs });
        self.send(Method::POST, "/v1/relays/ended-runs", &[], Some(&body)).await
    }

    /// `GET /v1/nodes/{uuid}`.
    pub async fn get_node(&self, id: gantry_types::NodeId) -> Result<gantry_types::node::Node, ClientError> {
        self.send(Method::GET, &format!("/v1/nodes/{id}"), &[], None).await
    }

    /// `GET /v1/consumer-profiles`.
    pub async fn list_consumer_profiles(
        &self,
        query: &[(String, String)],
    ) -> Result<ListResponse<ConsumerProfile>, ClientError> {
        self.send(Method::GET, "/v1/consumer-profiles", query, None).await
    }

    /// `PATCH /v1/consumer-profiles/{uuid}` with any of its three fields.
    pub async fn update_consumer_profile(
        &self,
        id: gantry_types::ConsumerProfileId,
        body: &serde_json::Value,
    ) -> Result<ConsumerProfile, ClientError> {
        self.send(Method::PATCH, &format!("/v1/consumer-profiles/{id}"), &[], Some(body)).await
    }

    /// `GET /v1/compute/offers` with filter pairs (`("filter[gpu_name]", "RTX 4090")`).
    pub async fn list_offers(&self, query: &[(String, String)]) -> Result<ListResponse<ComputeOffer>, ClientError> {
        self.send(Method::GET, "/v1/compute/offers", query, None).await
    }

    /// `GET /v1/accounts/{uuid}/balance`.
    pub async fn balance(&self, account: gantry_types::AccountId) -> Result<Balance, ClientError> {
        self.send(Method::GET, &format!("/v1/accounts/{account}/balance"), &[], None).await
    }

    /// `GET /v1/compute/ledger/transactions`.
    pub async fn list_ledger_transactions(
        &self,
        query: &[(String, String)],
    ) -> Result<ListResponse<LedgerTransaction>, ClientError> {
        self.send(Method::GET, "/v1/compute/ledger/transactions", query, None).await
    }

    /// `POST /v1/compute/ledger/credit-purchases`.
    pub async fn create_credit_purchase(&self, body: &serde_json::Value) -> Result<CreditPurchaseCreated, ClientError> {
        self.send(Method::POST, "/v1/compute/ledger/credit-purchases", &[], Some(body)).await
    }

    /// `GET /v1/compute/ledger/credit-purchases`.
    pub async fn list_credit_purchases(
        &self,
        query: &[(String, String)],
    ) -> Result<ListResponse<CreditPurchase>, ClientError> {
        self.send(Method::GET, "/v1/compute/ledger/credit-purchases", query, None).await
    }

    /// `GET /v1/compute/ledger/credit-purchases/reconcile?checkout_session_id=...`.
    pub async fn reconcile_credit_purchase(&self, checkout_session_id: &str) -> Result<CreditPurchase, ClientError> {
        let q = query(&[("checkout_session_id", checkout_session_id)]);
        self.send(Method::GET, "/v1/compute/ledger/credit-purchases/reconcile", &q, None).await
    }

    /// `PUT /v1/compute/ledger/credit-purchases/{uuid}/settle` (operators): `paid` or `expired`.
    pub async fn settle_credit_purchase(
        &self,
        id: gantry_types::CreditPurchaseId,
        outcome: &str,
    ) -> Result<CreditPurchase, ClientError> {
        let body = serde_json::json!({ "outcome": outcome });
        self.send(Method::PUT, &format!("/v1/compute/ledger/credit-purchases/{id}/settle"), &[], Some(&body)).await
    }
}

/// Builds query pairs from `(&str, &str)` tuples.
pub fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_list_is_split_trimmed_and_rotated() {
        let e = Endpoints::parse(" http://a:1/ ,http://b:2,, ");
        assert_eq!(e.urls, ["http://a:1", "http://b:2"]);
        assert_eq!(e.current(), (0, "http://a:1"));
        e.failed(0);
        assert_eq!(e.current(), (1, "http://b:2"));
        // A second request that failed on the old instance does not skip the new one.
        e.failed(0);
        assert_eq!(e.current(), (1, "http://b:2"));
        e.failed(1);
        assert_eq!(e.current(), (0, "http://a:1"));
        let single = Endpoints::parse("http://only:8080/");
        single.failed(0);
        assert_eq!(single.current(), (0, "http://only:8080"));
    }
}
