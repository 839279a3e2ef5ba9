//! The key that encrypts secrets at rest, across instances and restarts: every
//! instance sharing a database must hold the same key, and one that does not refuses
//! to start (naming `--secret-key-file`) instead of writing secrets nobody else can
//! read. On SQLite (a restart with another key) and on PostgreSQL (a second instance).

use gantry_server::ServerConfig;
use gantry_test_harness::{TestContext, batch_job};
use gantry_types::permissions::Preset;

fn new_key() -> String {
    hex::encode(gantry_auth::SecretBox::generate_key())
}

async fn start(
    dir: &std::path::Path,
    database_url: Option<&str>,
    key: Option<&str>,
) -> anyhow::Result<gantry_server::RunningServer> {
    let mut config = ServerConfig::new(dir, "127.0.0.1:0".parse().unwrap());
    config.database_url = database_url.map(str::to_string);
    config.server_key = key.map(str::to_string);
    gantry_server::start(config).await
}

fn assert_refused(result: anyhow::Result<gantry_server::RunningServer>) {
    let err = match result {
        Ok(_) => panic!("a server with another key started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("cannot decrypt the secrets in this database") && err.contains("--secret-key-file"), "{err}");
}

#[tokio::test]
async fn a_restart_with_another_key_is_refused_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let first = start(dir.path(), None, None).await.unwrap();
    first.shutdown().await.unwrap();
    assert_refused(start(dir.path(), None, Some(&new_key())).await);
    // The data dir's own key still works.
    start(dir.path(), None, None).await.unwrap().shutdown().await.unwrap();
}

#[tokio::test]
async fn a_database_from_before_the_check_is_checked_against_its_stored_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let old_key = gantry_auth::SecretBox::new(gantry_auth::SecretBox::generate_key());
    {
        // What an older Gantry left: API keys sealed with its key, no check value.
        let store = gantry_store::open(dir.path(), None).await.unwrap();
        let account = gantry_server::admin::create_account(store.as_ref(), "Old", None).await.unwrap();
        let spec = gantry_server::admin::KeySpec {
            name: "old".into(),
            permissions: Preset::Consumer.permissions(),
            allowed_ips: vec![],
            expires_at_ms: None,
        };
        gantry_server::admin::create_in(store.as_ref(), &old_key, account.uuid, spec).await.unwrap();
        assert_eq!(store.setting_fetch(gantry_store::deployment::KEY_CHECK).await.unwrap(), None);
    }
    assert_refused(start(dir.path(), None, Some(&new_key())).await);
    assert_eq!(
        gantry_store::open(dir.path(), None)
            .await
            .unwrap()
            .setting_fetch(gantry_store::deployment::KEY_CHECK)
            .await
            .unwrap(),
        None,
        "a refused start writes no check value"
    );
}

#[tokio::test]
async fn instances_on_one_postgres_share_the_key_or_refuse_to_start() {
    let Some(admin_url) = gantry_store::testsuite::scratch_pg::admin_url() else { return };
    let (database, url) = gantry_store::testsuite::scratch_pg::create_database(&admin_url).await;
    let key = new_key();
    let ctx = TestContext::start_with(|c| {
        c.database_url = Some(url.clone());
        c.server_key = Some(key.clone());
    })
    .await;
    let alice = ctx.new_account(Preset::Consumer).await;
    let mut body = batch_job("sealed by one instance");
    body["parameters"]["parameters"]["secret"] = serde_json::json!("registry-password");
    let job = alice.create_job(&body).await.unwrap();

    // A second instance with its own data dir (and so its own generated key): refused.
    let other_dir = tempfile::tempdir().unwrap();
    assert_refused(start(other_dir.path(), Some(&url), None).await);

    // With the shared key it serves the same API: alice's key (sealed by the first
    // instance) authenticates, and the secret sealed there opens here.
    let second = start(other_dir.path(), Some(&url), Some(&key)).await.unwrap();
    let creds = alice.credentials();
    let via_second = gantry_client::Client::new(gantry_client::Credentials {
        base_url: format!("http://{}", second.local_addr),
        ..creds.clone()
    });
    assert_eq!(via_second.get_job(job.uuid).await.unwrap().uuid, job.uuid);
    let stored = second.store().job_fetch(None, job.uuid).await.unwrap().unwrap();
    let sealed = stored.parameters.parameters.secret.unwrap();
    assert_eq!(second.secrets().decrypt(&sealed).unwrap(), "registry-password");
    second.shutdown().await.unwrap();
    ctx.shutdown().await;
    gantry_store::testsuite::scratch_pg::drop_database(&admin_url, &database).await;
}
