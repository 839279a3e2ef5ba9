//! The marketplace's wire objects (API.md §4.10-§4.12): consumer profiles, compute
//! offers, balances, ledger transactions and credit purchases, with their request
//! bodies and `filter[...]` parsers. Amounts travel as JSON numbers of USD because
//! upstream clients read them so; each also carries Gantry's exact `*_micros` integer
//! (see [`crate::money`]), which is what the ledger holds.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::FieldError;
use crate::ids::{
    AccountId, ConsumerProfileId, CreditPurchaseId, GpuModelId, JobRunId, LedgerEntryId, LedgerTransactionId, NodeId,
};
use crate::list::{boolean, filters, list};
use crate::region::is_region_code;
use crate::time::Timestamp;

/// The consumer profile (API.md §4.11): one per account, created on first use.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConsumerProfile {
    /// Always `consumer_profile`.
    pub object: String,
    /// The profile's ID.
    #[schema(value_type = String, format = Uuid)]
    pub uuid: ConsumerProfileId,
    /// The account it belongs to.
    pub account_uuid: AccountId,
    /// Inactive profiles cannot submit jobs.
    pub is_active: bool,
    /// Whether billing is enforced for this consumer (when the server enforces billing).
    pub is_compute_billing_enabled: bool,
    /// When non-empty, this consumer's jobs only run on nodes in these regions.
    pub allowed_region_codes: Vec<String>,
    /// Gantry's: most PENDING jobs this consumer may have (`null`: the server's
    /// `--max-pending-jobs`; `0`: no limit). Set by operators.
    #[serde(default)]
    pub max_pending_jobs: Option<u64>,
    /// Gantry's: most bytes of stored job JSON this consumer may have, over all its
    /// jobs (`null`: the server's `--max-stored-job-bytes`; `0`: no limit). Set by
    /// operators.
    #[serde(default)]
    pub max_stored_job_bytes: Option<u64>,
    /// Gantry's: requests per second this consumer may make (`null`: the server's
    /// `--rate-limit-rps`; `0`: no limit). Set by operators.
    #[serde(default)]
    pub rate_limit_rps: Option<f64>,
    /// Upstream's user reference; Gantry has none.
    pub render_user_id: Option<String>,
    /// Created.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Never set (profiles are not deleted).
    pub deleted_at: Option<Timestamp>,
}

/// `PATCH /v1/consumer-profiles/{uuid}`: any subset.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UpdateConsumerProfileRequest {
    /// Operators only.
    pub is_active: Option<bool>,
    /// Operators only.
    pub is_compute_billing_enabled: Option<bool>,
    /// At most 36 region codes; `[]` lifts the restriction.
    pub allowed_region_codes: Option<Vec<String>>,
    /// Operators only (Gantry's): most PENDING jobs; `0` no limit, `null` the server's.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u64>)]
    pub max_pending_jobs: Option<Option<u64>>,
    /// Operators only (Gantry's): most bytes of stored job JSON; `0` no limit, `null`
    /// the server's.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u64>)]
    pub max_stored_job_bytes: Option<Option<u64>>,
    /// Operators only (Gantry's): requests per second; `0` no limit, `null` the
    /// server's.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub rate_limit_rps: Option<Option<f64>>,
}

/// A PATCH field where `null` (clear) differs from absent (keep): present → `Some`.
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Largest quota value a profile may hold (stored as a signed 64-bit integer).
pub const MAX_QUOTA: u64 = i64::MAX as u64;

/// Most requests per second a profile may be given.
pub const MAX_RATE_LIMIT_RPS: f64 = 1e9;

/// Checks a profile PATCH's limit fields, naming each bad one.
pub fn check_profile_limits(patch: &UpdateConsumerProfileRequest, errors: &mut Vec<FieldError>) {
    for (field, value) in
        [("max_pending_jobs", patch.max_pending_jobs), ("max_stored_job_bytes", patch.max_stored_job_bytes)]
    {
        if let Some(Some(v)) = value
            && v > MAX_QUOTA
        {
            errors.push(FieldError::new(field, format!("must be at most {MAX_QUOTA}")));
        }
    }
    if let Some(Some(rps)) = patch.rate_limit_rps
        && !(rps.is_finite() && (0.0..=MAX_RATE_LIMIT_RPS).contains(&rps))
    {
        errors.push(FieldError::new("rate_limit_rps", format!("must be a number from 0 to {MAX_RATE_LIMIT_RPS}")));
    }
}

/// Validates a region list (a job's or a profile's), naming `field[i]` on error.
pub fn check_region_codes(field: &str, codes: &[String], errors: &mut Vec<FieldError>) {
    if codes.len() > crate::region::REGION_CODES.len() {
        errors.push(FieldError::new(field, format!("at most {} entries", crate::region::REGION_CODES.len())));
    }
    for (i, code) in codes.iter().enumerate() {
        if !is_region_code(code) {
            errors.push(FieldError::new(
                format!("{field}[{i}]"),
                format!("unknown region code {code:?} (e.g. us-east-1, eu-west-1)"),
            ));
        }
    }
}

/// `GET /v1/consumer-profiles` filters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConsumerProfileFilter {
    /// `filter[uuid]`.
    pub uuids: Vec<ConsumerProfileId>,
    /// `filter[account_uuid]`.
    pub account_uuids: Vec<AccountId>,
    /// `filter[is_compute_billing_enabled]`.
    pub is_compute_billing_enabled: Option<bool>,
}

/// Parses the consumer-profile filters.
pub fn parse_consumer_profile_filter(pairs: &[(String, String)]) -> Result<ConsumerProfileFilter, Vec<FieldError>> {
    const KNOWN: &[&str] = &["uuid", "account_uuid", "is_compute_billing_enabled"];
    let mut errors = Vec::new();
    let mut f = ConsumerProfileFilter::default();
    let items: Vec<(String, String)> =
        filters(pairs, KNOWN, &mut errors).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for (key, value) in &items {
        let (key, value, e) = (key.as_str(), value.as_str(), &mut errors);
        match key {
            "uuid" => f.uuids.extend(list(key, value, e, |s| s.parse::<ConsumerProfileId>().ok(), "a UUID")),
            "account_uuid" => f.account_uuids.extend(list(key, value, e, |s| s.parse::<AccountId>().ok(), "a UUID")),
            _ => f.is_compute_billing_enabled = boolean(key, value, e),
        }
    }
    if errors.is_empty() { Ok(f) } else { Err(errors) }
}

/// One GPU model of an offer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OfferGpuModel {
    /// GPUs of this model in the offer.
    pub count: u32,
    /// The registry model.
    pub gpu_registry_uuid: Option<GpuModelId>,
    /// Smallest free VRAM among them, GiB.
    pub min_vram_gib: f64,
    /// Model name.
    pub name: String,
}

/// What an offer is (API.md §4.10 `hardware_summary`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HardwareSummary {
    /// Free CPU cores.
    pub cpu_cores: u32,
    /// Free GPUs.
    pub gpu_count: u32,
    /// `2x NVIDIA RTX 4090`, or `CPU only`.
    pub gpu_model_label: String,
    /// The GPUs by model.
    pub gpu_models: Vec<OfferGpuModel>,
    /// The model, when there is one.
    pub gpu_registry_uuid: Option<GpuModelId>,
    /// Smallest free VRAM per GPU, GiB.
    pub min_gpu_vram_gib: f64,
    /// Free RAM, GiB.
    pub ram_gib: f64,
    /// Free storage, GiB.
    pub storage_gib: f64,
}

/// An offer's price.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OfferPricing {
    /// USD per hour for the whole offer.
    pub hourly_rate_usd: f64,
    /// Gantry addition: the same, exact, in micro-USD per hour.
    pub hourly_rate_micros: i64,
    /// When the price was quoted.
    pub quoted_at: Timestamp,
}

/// Gantry's `availability`: how many nodes offer exactly this.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OfferAvailability {
    /// Online, schedulable nodes with this free capacity.
    pub node_count: u32,
}

/// A compute offer (API.md §4.10).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ComputeOffer {
    /// Free capacity of live nodes, grouped.
    pub availability: OfferAvailability,
    /// The hardware.
    pub hardware_summary: HardwareSummary,
    /// Stable for the same hardware shape and region.
    pub offer_id: String,
    /// Price.
    pub pricing: OfferPricing,
    /// Region; null for nodes registered without one.
    pub region_code: Option<String>,
}

/// `GET /v1/compute/offers` filters (all minimums; a job asking this much fits).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OfferFilter {
    /// At least this many free cores.
    pub cpu_count: Option<u32>,
    /// At least this many free GPUs.
    pub gpu_count: Option<u32>,
    /// GPU model by name (resolved through the registry by the server).
    pub gpu_name: Option<String>,
    /// GPU model by uuid.
    pub gpu_registry_uuid: Option<GpuModelId>,
    /// Per GPU, GB.
    pub min_vram_gb: Option<f64>,
    /// GB.
    pub min_ram_gb: Option<f64>,
    /// GB.
    pub min_storage_gb: Option<f64>,
    /// Intersected with the caller's profile allowlist.
    pub allowed_region_codes: Vec<String>,
}

/// Parses the offer filters.
pub fn parse_offer_filter(pairs: &[(String, String)]) -> Result<OfferFilter, Vec<FieldError>> {
    const KNOWN: &[&str] = &[
        "cpu_count",
        "gpu_count",
        "gpu_name",
        "gpu_registry_uuid",
        "min_vram_gb",
        "min_ram_gb",
        "min_storage_gb",
        "allowed_region_codes",
    ];
    let mut errors = Vec::new();
    let mut f = OfferFilter::default();
    let items: Vec<(String, String)> =
        filters(pairs, KNOWN, &mut errors).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for (key, value) in &items {
        let field = format!("filter[{key}]");
        let count = |e: &mut Vec<FieldError>| match value.trim().parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                e.push(FieldError::new(field.clone(), format!("must be an integer >= 0, got {value:?}")));
                None
            }
        };
        let gb = |e: &mut Vec<FieldError>| match crate::list::number(value.trim()) {
            Some(n) if n >= 0.0 => Some(n),
            _ => {
                e.push(FieldError::new(field.clone(), format!("must be a number >= 0, got {value:?}")));
                None
            }
        };
        match key.as_str() {
            "cpu_count" => f.cpu_count = count(&mut errors),
            "gpu_count" => f.gpu_count = count(&mut errors),
            "gpu_name" => f.gpu_name = Some(value.trim().to_string()).filter(|s| !s.is_empty()),
            "gpu_registry_uuid" => match value.trim().parse() {
                Ok(id) => f.gpu_registry_uuid = Some(id),
                Err(_) => errors.push(FieldError::new(field, format!("not a UUID: {value:?}"))),
            },
            "min_vram_gb" => f.min_vram_gb = gb(&mut errors),
            "min_ram_gb" => f.min_ram_gb = gb(&mut errors),
            "min_storage_gb" => f.min_storage_gb = gb(&mut errors),
            _ => {
                let codes = list(key, value, &mut errors, |s| Some(s.to_string()), "");
                for c in &codes {
                    if !is_region_code(c) {
                        errors.push(FieldError::new(field.clone(), format!("unknown region code {c:?}")));
                    }
                }
                f.allowed_region_codes = codes;
            }
        }
    }
    if f.gpu_name.is_some() && f.gpu_registry_uuid.is_some() {
        errors.push(FieldError::new("filter[gpu_name]", "give gpu_name or gpu_registry_uuid, not both"));
    }
    if errors.is_empty() { Ok(f) } else { Err(errors) }
}

/// `GET /v1/accounts/{uuid}/balance`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Balance {
    /// Always `account_balance`.
    pub object: String,
    /// The account.
    pub account_uuid: AccountId,
    /// USD: posted balance minus what running runs have used so far but not yet been charged.
    pub available_balance: f64,
    /// Always `USD`.
    pub currency: String,
    /// Gantry addition: `available_balance` in micro-USD, exact.
    pub available_balance_micros: i64,
    /// Gantry addition: the sum of the account's ledger entries, micro-USD.
    pub posted_balance_micros: i64,
    /// Gantry addition: usage of running runs not yet charged, micro-USD.
    pub accrued_usage_micros: i64,
}

/// Kinds of ledger transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LedgerKind {
    /// Credit granted by an operator or bought.
    Credit,
    /// A run's billed time: the consumer pays, the node owner and the platform earn.
    RunCharge,
    /// An operator's correction.
    Adjustment,
}

impl LedgerKind {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Credit => "CREDIT",
            Self::RunCharge => "RUN_CHARGE",
            Self::Adjustment => "ADJUSTMENT",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Credit, Self::RunCharge, Self::Adjustment].into_iter().find(|k| k.as_str().eq_ignore_ascii_case(text))
    }
}

/// One line of an account's ledger (`GET /v1/compute/ledger/transactions`): one
/// account's side of a transaction whose sides sum to zero.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LedgerTransaction {
    /// Always `compute_ledger_transaction`.
    pub object: String,
    /// This entry's ID.
    #[schema(value_type = String, format = Uuid)]
    pub uuid: LedgerEntryId,
    /// The transaction this entry is one side of.
    #[schema(value_type = String, format = Uuid)]
    pub transaction_uuid: LedgerTransactionId,
    /// Whose ledger.
    pub account_uuid: AccountId,
    /// What happened.
    pub kind: LedgerKind,
    /// USD; positive adds to the balance.
    pub amount: f64,
    /// The same, exact.
    pub amount_micros: i64,
    /// Always `USD`.
    pub currency: String,
    /// The run billed, for run charges.
    pub job_run_uuid: Option<JobRunId>,
    /// The node the run used, for run charges.
    pub node_uuid: Option<NodeId>,
    /// Free text.
    pub memo: Option<String>,
    /// When it was posted.
    pub created_at: Timestamp,
}

/// Credit purchase states (upstream's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CreditPurchaseStatus {
    /// Waiting for payment.
    Pending,
    /// Paid and credited.
    Completed,
    /// Not paid; never credited.
    Expired,
}

impl CreditPurchaseStatus {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Completed => "COMPLETED",
            Self::Expired => "EXPIRED",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Completed, Self::Expired].into_iter().find(|k| k.as_str().eq_ignore_ascii_case(text))
    }
}

/// `POST /v1/compute/ledger/credit-purchases`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateCreditPurchaseRequest {
    /// Required: USD, > 0 (a number or a decimal string; at most 6 decimals).
    pub amount: Option<serde_json::Value>,
    /// Where the payment page sends the buyer afterwards.
    pub redirect_url: Option<String>,
    /// Where it sends them on cancel.
    pub cancel_url: Option<String>,
    /// Free text.
    pub memo: Option<String>,
}

/// Parses a money amount sent as a JSON number or string into micro-USD (> 0).
pub fn parse_amount(field: &str, value: Option<&serde_json::Value>) -> Result<i64, FieldError> {
    let text = match value {
        None | Some(serde_json::Value::Null) => return Err(FieldError::new(field, "is required")),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => return Err(FieldError::new(field, format!("must be a number of USD, got {other}"))),
    };
    match crate::money::parse_usd(&text, false) {
        Ok(0) => Err(FieldError::new(field, "must be greater than 0")),
        Ok(m) => Ok(m),
        Err(e) => Err(FieldError::new(field, e)),
    }
}

/// The payment page's session (Stripe-shaped; the manual provider fills what it has).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckoutSession {
    /// Session ID (`cs_...`).
    pub id: String,
    /// Always `checkout.session`.
    pub object: String,
    /// Provider name (Gantry addition): `manual`, ...
    pub provider: String,
    /// `USD`.
    pub currency: String,
    /// `payment`.
    pub mode: String,
    /// `unpaid`, `paid`.
    pub payment_status: String,
    /// `open`, `complete`, `expired`.
    pub status: String,
    /// Amount, micro-USD.
    pub amount_total: i64,
    /// The purchase uuid.
    pub client_reference_id: String,
    /// The page to pay on, if the provider has one (the manual provider has none).
    pub url: Option<String>,
    /// Redirect after payment.
    pub success_url: Option<String>,
    /// Redirect after cancel.
    pub cancel_url: Option<String>,
}

/// The credit purchase object (API.md §4.12).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreditPurchase {
    /// Always `compute_ledger_credit_purchase`.
    pub object: String,
    /// ID.
    #[schema(value_type = String, format = Uuid)]
    pub uuid: CreditPurchaseId,
    /// USD.
    pub amount: f64,
    /// Exact, micro-USD (Gantry addition).
    pub amount_micros: i64,
    /// `USD` (upstream sells in EUR; Gantry's ledger has one currency).
    pub currency: String,
    /// The provider's session.
    pub checkout_session_id: String,
    /// PENDING, COMPLETED, EXPIRED.
    pub status: CreditPurchaseStatus,
    /// The buyer's profile.
    #[schema(value_type = String, format = Uuid)]
    pub consumer_profile_uuid: ConsumerProfileId,
    /// The buyer.
    pub consumer_account_uuid: AccountId,
    /// Upstream's; null.
    pub render_user_id: Option<String>,
    /// Free text.
    pub memo: Option<String>,
    /// When it was paid.
    pub completed_at: Option<Timestamp>,
    /// Created.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// The create response (API.md §4.12).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreditPurchaseCreated {
    /// The purchase.
    pub purchase: CreditPurchase,
    /// Created.
    pub created_at: Timestamp,
    /// Deprecated upstream: `checkout_session.id`.
    pub session_id: String,
    /// Deprecated upstream: `checkout_session.url`.
    pub session_url: Option<String>,
    /// USD as submitted.
    pub submitted_amount: f64,
    /// The session.
    pub checkout_session: CheckoutSession,
}

/// `PUT /v1/compute/ledger/credit-purchases/{uuid}/settle` (operators, manual provider).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SettleCreditPurchaseRequest {
    /// `paid` (credit it) or `expired` (never credit it).
    pub outcome: Option<String>,
}

/// A node's earnings, shown to its owner (Gantry addition to the node object).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeEarnings {
    /// USD earned by the node's billed run time.
    pub total_usd: f64,
    /// The same, exact.
    pub total_micros: i64,
    /// `USD`.
    pub currency: String,
    /// Runs billed on this node.
    pub billed_runs: u64,
}
