//! Webhook endpoints and the outbox on SQLite: writes on the writer thread (the
//! fan-out is one op, so its deliveries and its cursor commit together), reads
//! through the reader pool.

use std::sync::LazyLock;

use async_trait::async_trait;
use gantry_types::list::Paging;
use gantry_types::webhook::WebhookDelivery;
use gantry_types::{AccountId, WebhookId};
use rusqlite::params;

use super::SqliteStore;
use super::rows::{self, db, write_error};
use crate::sql::row::{ToRow, insert_sql};
use crate::sql::{self, Placeholders, Subject};
use crate::webhooks::{
    DELIVERY_COLUMNS, DeliveryRow, WEBHOOK_COLUMNS, WebhookRecord, WebhookRow, WebhookStore, delivery_order, due_sql,
    fanout_sql,
};
use crate::{Page, StoreResult};

static INSERT: LazyLock<String> = LazyLock::new(|| insert_sql::<WebhookRow>(Placeholders::Question, ""));
static FANOUT: LazyLock<String> = LazyLock::new(|| fanout_sql(Placeholders::Question));
static DUE: LazyLock<String> = LazyLock::new(|| due_sql(Placeholders::Question));

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn webhook_create(&self, webhook: &WebhookRecord) -> StoreResult<()> {
        let row = WebhookRow::new(webhook)?;
        let (id, account) = (webhook.webhook.uuid, webhook.webhook.account_uuid);
        self.writer
            .write(move |conn| {
                rows::insert(conn, &INSERT, &row)
                    .map(drop)
                    .map_err(write_error("webhook create", || Subject::webhook(id, account)))
            })
            .await
    }

    async fn webhook_fetch(&self, account: Option<AccountId>, id: WebhookId) -> StoreResult<Option<WebhookRecord>> {
        let (id, scope) = (id.to_string(), account.map(|a| a.to_string()));
        self.read(move |conn| {
            let sql =
                format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE uuid = ?1 AND (?2 IS NULL OR account_uuid = ?2)");
            rows::one::<WebhookRow>(conn, &sql, params![id, scope], "webhook fetch")
        })
        .await
    }

    async fn webhook_list(&self, account: Option<AccountId>, paging: Paging) -> StoreResult<Page<WebhookRecord>> {
        let query = sql::webhook_list(Placeholders::Question, account, paging);
        self.read(move |conn| rows::page::<WebhookRow>(conn, &query, "webhook list")).await
    }

    async fn webhook_list_all(&self) -> StoreResult<Vec<WebhookRecord>> {
        self.read(|conn| {
            let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY created_at_ms, uuid");
            rows::all::<WebhookRow>(conn, &sql, [], "webhook list all")
        })
        .await
    }

    async fn webhook_delete(&self, account: Option<AccountId>, id: WebhookId) -> StoreResult<Option<WebhookRecord>> {
        let (id, scope) = (id.to_string(), account.map(|a| a.to_string()));
        self.writer
            .write(move |conn| {
                let sql = format!(
                    "DELETE FROM webhooks WHERE uuid = ?1 AND (?2 IS NULL OR account_uuid = ?2) RETURNING {WEBHOOK_COLUMNS}"
                );
                rows::one::<WebhookRow>(conn, &sql, params![id, scope], "webhook delete")
            })
            .await
    }

    async fn webhook_outbox_cursor(&self) -> StoreResult<i64> {
        self.read(|conn| {
            conn.prepare_cached("SELECT cursor FROM webhook_outbox_state")
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(db("webhook outbox cursor"))
        })
        .await
    }

    async fn webhook_fanout(&self, deliveries: &[WebhookDelivery], cursor: i64) -> StoreResult<()> {
        let rows: Vec<DeliveryRow> = deliveries.iter().map(DeliveryRow::new).collect();
        self.writer
            .write(move |conn| {
                let mut insert = conn.prepare_cached(&FANOUT).map_err(db("webhook fanout"))?;
                for r in &rows {
                    r.with_sqlite_params(|p| insert.execute(p)).map_err(db("webhook fanout"))?;
                }
                conn.prepare_cached("UPDATE webhook_outbox_state SET cursor = max(cursor, ?1)")
                    .and_then(|mut s| s.execute([cursor]))
                    .map(drop)
                    .map_err(db("webhook fanout"))
            })
            .await
    }

    async fn webhook_delivery_due(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<WebhookDelivery>> {
        self.read(move |conn| rows::all::<DeliveryRow>(conn, &DUE, params![now_ms, limit], "webhook delivery due"))
            .await
    }

    async fn webhook_delivery_update(&self, delivery: &WebhookDelivery) -> StoreResult<()> {
        let r = DeliveryRow::new(delivery);
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE webhook_deliveries SET status = ?2, attempts = ?3, status_code = ?4, last_error = ?5, \
                     next_attempt_at_ms = ?6, delivered_at_ms = ?7, updated_at_ms = ?8 WHERE uuid = ?1",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        r.uuid,
                        r.status,
                        r.attempts,
                        r.status_code,
                        r.last_error,
                        r.next_attempt_at_ms,
                        r.delivered_at_ms,
                        r.updated_at_ms
                    ])
                })
                .map(drop)
                .map_err(db("webhook delivery update"))
            })
            .await
    }

    async fn webhook_delivery_list(
        &self,
        account: Option<AccountId>,
        webhook: WebhookId,
        paging: Paging,
    ) -> StoreResult<Option<Page<WebhookDelivery>>> {
        let (id, scope) = (webhook.to_string(), account.map(|a| a.to_string()));
        self.read(move |conn| {
            let tx = conn.unchecked_transaction().map_err(db("webhook delivery list"))?;
            let exists: bool = tx
                .query_row(
                    "SELECT COUNT(*) > 0 FROM webhooks WHERE uuid = ?1 AND (?2 IS NULL OR account_uuid = ?2)",
                    params![id, scope],
                    |r| r.get(0),
                )
                .map_err(db("webhook delivery list"))?;
            if !exists {
                return Ok(None);
            }
            let total: i64 = tx
                .query_row("SELECT COUNT(*) FROM webhook_deliveries WHERE webhook_uuid = ?1", [&id], |r| r.get(0))
                .map_err(db("webhook delivery list"))?;
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_uuid = ?1 {} LIMIT ?2 OFFSET ?3",
                delivery_order(paging)
            );
            let offset = i64::try_from(paging.offset()).unwrap_or(i64::MAX);
            let items =
                rows::all::<DeliveryRow>(&tx, &sql, params![id, paging.limit, offset], "webhook delivery list")?;
            tx.finish().map_err(db("webhook delivery list"))?;
            Ok(Some(Page { items, total: u64::try_from(total).unwrap_or(0) }))
        })
        .await
    }
}
