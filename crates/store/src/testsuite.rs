//! The conformance suite every [`Store`] backend must pass.
//!
//! One suite, not one per backend, so SQLite and PostgreSQL cannot drift apart: each
//! check is a plain `async fn` over `&dyn Store` (or over a [`StoreFixture`] when it
//! needs to spawn tasks or reopen the database), and [`store_test_suite!`]
//! expands one `#[tokio::test]` per check for a backend:
//!
//! ```text
//! gantry_store::store_test_suite!(async { Some(MySqliteFixture::new().await) });
//! ```
//!
//! The expression is evaluated afresh for each test and yields `Option<fixture>`;
//! `None` means the backend is not available here and the test passes without
//! running (the fixture says so; see `tests/postgres.rs`). The tests run on a
//! multi-threaded runtime, so concurrency checks really run in parallel. The
//! calling crate needs `tokio` (with `macros`) as a dependency.
//!
//! Test data is realistic (jobs are built with [`JobSpec::into_job`], as the server
//! does) and every row has a distinct `created_at`, so every expected order is exact.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use gantry_types::{
    AccountId, ApiKeyId, JobId,
    job::{ContainerAccessToken, DockerParameters, Job, JobParameters, JobSpec, JobTask, Volume},
    list::{ApiKeyFilter, JobFilter, Paging, Range},
};

use crate::{AccountRecord, ApiKeyRecord, Store, StoreError};

mod accounts;
mod api_keys;
mod batches;
mod billing;
mod cluster;
mod deployment;
mod events;
mod gpu_models;
mod jobs;
mod notify;
mod recipes;
pub mod scratch_pg;
mod usage;
mod webhooks;

pub use self::accounts::*;
pub use self::api_keys::*;
pub use self::batches::*;
pub use self::billing::*;
pub use self::cluster::*;
pub use self::deployment::*;
pub use self::events::*;
pub use self::gpu_models::*;
pub use self::jobs::*;
pub use self::notify::*;
pub use self::recipes::*;
pub use self::usage::*;
pub use self::webhooks::*;

/// A backend under test: owns the store and whatever it needs (a temp dir, a
/// throwaway database).
#[async_trait]
pub trait StoreFixture: Send + Sync {
    /// The store under test.
    fn store(&self) -> Arc<dyn Store>;
    /// Drops the store (callers must have dropped their clones) and opens the same
    /// database again, as a restarted server would.
    async fn reopen(&mut self);
    /// Cleans up after a passing test (a failing one leaves its database to inspect).
    async fn teardown(&mut self) {}
}

/// Expands the whole suite into `#[tokio::test]`s for one backend; the argument is an
/// async expression producing an `Option` of a [`StoreFixture`], evaluated per test.
#[macro_export]
macro_rules! store_test_suite {
    ($fixture:expr) => {
        $crate::store_test_suite!(@store $fixture;
            account_create_fetch,
            api_key_create_fetch_by_public_key,
            api_key_duplicate_public_key_conflicts,
            api_key_unknown_account_is_missing_reference,
            api_key_list_filters_and_scoping,
            api_key_revoke_is_idempotent,
            api_key_revoke_out_of_scope_is_none,
            api_key_touch_only_moves_forward,
            job_create_fetch_roundtrip,
            job_fetch_other_account_is_none,
            job_duplicate_uuid_conflicts,
            job_list_paging_and_order,
            job_list_filters,
            job_list_account_scoping,
            job_transition_compare_and_set,
            job_transition_out_of_scope_is_none,
            node_upsert_fetch_roundtrip,
            node_upsert_keeps_created_at_and_draining,
            node_fetch_other_account_is_none,
            node_list_filters_paging_and_scoping,
            node_heartbeat_needs_epoch_and_online,
            node_heartbeats_apply_each_like_one,
            node_mark_lost_compare_and_set,
            node_mark_lost_many_marks_each_like_one,
            node_fetch_many_returns_the_known_ones,
            node_list_online_is_the_online_ones,
            run_update_many_applies_each_like_one,
            job_transition_many_applies_each_like_one,
            ledger_post_many_posts_each_once,
            node_set_draining_is_scoped,
            run_place_assigns_pending_jobs_only,
            run_place_error_places_nothing,
            run_fetch_list_filters_and_scoping,
            run_list_active_and_for_job,
            run_list_due_has_the_runs_a_pass_acts_on,
            run_still_wanted_follows_run_and_job,
            run_count_active_counts_active_runs_and_their_gpus,
            run_update_compare_and_set,
            run_update_records_image_size,
            run_logs_keep_the_newest_bytes,
            job_list_pending_order_and_limit,
            job_transition_retry_and_end,
            job_usage_follows_status_changes,
            job_count_by_status_counts_across_accounts,
            job_create_within_quota,
            job_list_pending_by_account_takes_each_head,
            gpu_model_seed_is_idempotent,
            gpu_model_seed_never_overwrites,
            gpu_model_seed_concurrent,
            gpu_model_create_fetch_list,
            gpu_model_duplicate_conflicts,
            recipe_create_fetch_roundtrip,
            recipe_visibility_in_fetch_and_list,
            recipe_list_filters_and_paging,
            recipe_update_compare_and_set,
            recipe_delete_is_scoped,
            recipe_touch_only_moves_forward,
            recipe_seed_is_idempotent,
            consumer_profile_ensure_update_and_scope,
            ledger_post_balances_and_is_idempotent,
            run_list_unbilled_and_node_earnings,
            credit_purchase_settles_once,
            setting_first_value_wins,
            setting_concurrent_inserts_agree,
            leadership_is_exclusive_and_passes_on,
            leadership_lease_runs_out,
            leader_writes_are_fenced,
            notifications_reach_every_listener_in_order,
            event_log_follows_changes,
            event_not_written_when_the_change_fails,
            event_prune_moves_the_horizon,
            webhook_create_list_delete_scoped,
            webhook_outbox_orders_per_endpoint,
            webhook_writes_are_fenced,
        );
        $crate::store_test_suite!(@fixture $fixture;
            job_create_concurrent,
            job_create_batch_isolates_failures,
            job_create_batch_of_plain_jobs,
            job_create_within_quota_concurrent,
            data_survives_reopen,
            run_place_batch_of_1000,
            status_writes_at_once_answer_each_their_own,
            placements_racing_creations_keep_counters_exact,
            counters_exact_across_mixed_group_commits,
            cluster_survives_reopen,
            gpu_models_survive_reopen,
            recipes_survive_reopen,
            ledger_concurrent_charges,
            billing_survives_reopen,
            settings_survive_reopen,
            event_ids_follow_commit_order,
        );
    };
    (@store $fixture:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let Some(mut fixture) = $fixture.await else { return };
            let store = $crate::testsuite::StoreFixture::store(&fixture);
            $crate::testsuite::$name(&*store).await;
            drop(store);
            $crate::testsuite::StoreFixture::teardown(&mut fixture).await;
        }
    )*};
    (@fixture $fixture:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let Some(mut fixture) = $fixture.await else { return };
            $crate::testsuite::$name(&mut fixture).await;
            $crate::testsuite::StoreFixture::teardown(&mut fixture).await;
        }
    )*};
}

// ---------------------------------------------------------------------------------
// Test data

/// 2026-01-01T00:00:00Z: the suite's epoch.
pub const T0: i64 = 1_767_225_600_000;

/// Creates an account named `name`, returns its id.
pub async fn new_account(store: &dyn Store, name: &str) -> AccountId {
    let account = AccountRecord {
        uuid: AccountId::new(),
        name: name.into(),
        email: Some(format!("{}@example.com", name.to_lowercase())),
        created_at_ms: T0,
    };
    store.account_create(&account).await.expect("account create");
    account.uuid
}

/// A live API key of `account`, created at `created_at_ms`.
pub fn api_key(account: AccountId, created_at_ms: i64) -> ApiKeyRecord {
    let uuid = ApiKeyId::new();
    ApiKeyRecord {
        uuid,
        account_uuid: account,
        name: format!("key created at {created_at_ms}"),
        public_key: format!("pk_{}", uuid.0.simple()),
        secret_encrypted: format!("v1.nonce.{}", uuid.0.simple()),
        permissions: vec!["jobs:read".into(), "jobs:write".into()],
        allowed_ips: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
        expires_at_ms: None,
        is_revoked: false,
        created_at_ms,
        updated_at_ms: created_at_ms,
        last_used_at_ms: None,
        deleted_at_ms: None,
    }
}

const CPU: [i64; 6] = [1, 2, 4, 8, 16, 32];
const GPU: [i64; 6] = [0, 1, 2, 4, 8, 1];
const RAM: [f64; 6] = [0.5, 1.0, 8.0, 16.0, 32.0, 64.0];
const STORAGE: [f64; 6] = [1.0, 10.0, 20.5, 50.0, 100.0, 250.0];
const VRAM: [f64; 6] = [0.0, 8.0, 16.0, 24.0, 40.5, 80.0];

/// A realistic PENDING job of `account` created at `created_at_ms`; `variant` (0-5
/// repeating) varies sizes, task, recipe and parameters.
pub fn job(account: AccountId, created_at_ms: i64, variant: usize) -> Job {
    let v = variant % 6;
    let batch = v.is_multiple_of(2);
    let spec = JobSpec {
        title: format!("train-{variant}"),
        task: if batch { JobTask::Batch } else { JobTask::Persistent },
        parameters: JobParameters {
            kind: "docker".into(),
            parameters: DockerParameters {
                image: "ghcr.io/acme/trainer".into(),
                tag: Some(format!("v{variant}")),
                env: Some(BTreeMap::from([("EPOCHS".into(), variant.to_string())])),
                ports: (!batch).then(|| vec![8888, 22]),
                volumes: batch
                    .then(|| vec![Volume { image: "acme/dataset".into(), mount: "/data".into(), ..Volume::default() }]),
                ..DockerParameters::default()
            },
        },
        max_timeout_run_ms: batch.then_some(3_600_000),
        cpu_count: CPU[v],
        gpu_count: GPU[v],
        description: None,
        gpu_name: (GPU[v] > 0).then(|| "H100".into()),
        gpu_registry_uuid: None,
        max_node_count: 1,
        max_retry_count: 0,
        max_timeout_assign_ms: 300_000,
        max_timeout_start_ms: 300_000,
        min_ram_gb: RAM[v],
        min_storage_gb: STORAGE[v],
        min_vram_gb: VRAM[v],
        allowed_region_codes: if v < 3 { vec!["eu-west".into(), "us-east".into()] } else { vec![] },
    };
    let mut job = spec.into_job(JobId::new(), account, created_at_ms);
    job.source_recipe_uuid = match v % 3 {
        0 => Some("recipe-a".into()),
        1 => Some("recipe-b".into()),
        _ => None,
    };
    job
}

/// A job with every optional field set, nested ones included.
pub fn full_job(account: AccountId, created_at_ms: i64) -> Job {
    let mut job = job(account, created_at_ms, 0);
    job.description = Some("fine-tune with \"quotes\", unicode é and\nnewlines".into());
    job.gpu_registry_uuid = Some("0190a8e2-0000-7000-8000-000000000001".into());
    job.image_size_bytes = Some(7_340_032_000);
    job.container_access_tokens = vec![ContainerAccessToken { token: "cat_123".into() }];
    job.status_reason = Some("waiting for a node".into());
    job.max_retry_count = 3;
    job.max_node_count = 2;
    job.min_ram_gb = 0.5;
    job.min_vram_gb = 0.25;
    job.min_storage_gb = 1e-3;
    job.parameters.parameters = DockerParameters {
        image: "registry.example.com/team/img".into(),
        tag: Some("2026.01".into()),
        host: Some("registry.example.com".into()),
        user: Some("robot$ci".into()),
        secret: Some("enc:v1:abc".into()),
        imagesrc: Some("upstream".into()),
        sshkey: Some("ssh-ed25519 AAAA test".into()),
        allowed_ips: Some(vec!["203.0.113.0/24".into()]),
        ports: Some(vec![22, 8888, 65535]),
        env: Some(BTreeMap::from([
            ("A".into(), "1".into()),
            ("EMPTY".into(), String::new()),
            ("JSON".into(), r#"{"k":[1,2]}"#.into()),
        ])),
        volumes: Some(vec![
            Volume {
                image: "acme/weights".into(),
                mount: "/weights".into(),
                registry: Some("registry.example.com".into()),
                secret: Some("enc:v1:def".into()),
                tag: Some("7b".into()),
                user: Some("reader".into()),
            },
            Volume { image: "acme/cache".into(), mount: "/cache".into(), ..Volume::default() },
        ]),
    };
    job.allowed_region_codes = vec!["ap-south".into(), "eu-west".into()];
    job
}

fn range<T>(min: Option<T>, max: Option<T>) -> Option<Range<T>> {
    Some(Range { min, max })
}

fn oldest_first(limit: u32) -> Paging {
    Paging { page: 1, limit, newest_first: false }
}

/// The uuids `filter` matches in scope, oldest first (asserts the total agrees).
async fn job_ids(store: &dyn Store, account: Option<AccountId>, filter: &JobFilter) -> Vec<JobId> {
    let page = store.job_list(account, filter, oldest_first(50)).await.expect("job list");
    assert_eq!(page.total, page.items.len() as u64, "total vs items for {filter:?}");
    page.items.iter().map(|j| j.uuid).collect()
}

async fn key_ids(store: &dyn Store, account: Option<AccountId>, filter: &ApiKeyFilter) -> Vec<ApiKeyId> {
    let page = store.api_key_list(account, filter, oldest_first(50)).await.expect("api key list");
    assert_eq!(page.total, page.items.len() as u64, "total vs items for {filter:?}");
    page.items.iter().map(|k| k.uuid).collect()
}

fn assert_conflict(result: Result<(), StoreError>) {
    assert!(matches!(result, Err(StoreError::Conflict { .. })), "expected Conflict, got {result:?}");
}

fn assert_missing(result: Result<(), StoreError>) {
    assert!(matches!(result, Err(StoreError::MissingReference { .. })), "expected MissingReference, got {result:?}");
}
