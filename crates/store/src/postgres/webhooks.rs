//! Webhook endpoints and the outbox on PostgreSQL: the fan-out is one transaction
//! (its deliveries and its cursor commit together).

use std::sync::LazyLock;

use async_trait::async_trait;
use gantry_types::list::Paging;
use gantry_types::webhook::WebhookDelivery;
use gantry_types::{AccountId, WebhookId};
use sqlx::AssertSqlSafe;

use super::{PgStore, db, insert_static, record, write_error};
use crate::sql::row::{ToRow, insert_sql};
use crate::sql::{self, Placeholders, Subject};
use crate::webhooks::{
    DELIVERY_COLUMNS, DeliveryRow, WEBHOOK_COLUMNS, WebhookRecord, WebhookRow, WebhookStore, delivery_order, due_sql,
    fanout_sql,
};
use crate::{Page, StoreResult};

static INSERT: LazyLock<String> = LazyLock::new(|| insert_sql::<WebhookRow>(Placeholders::Dollar, ""));
static FANOUT: LazyLock<String> = LazyLock::new(|| fanout_sql(Placeholders::Dollar));
static DUE: LazyLock<String> = LazyLock::new(|| due_sql(Placeholders::Dollar));

#[async_trait]
impl WebhookStore for PgStore {
    async fn webhook_create(&self, webhook: &WebhookRecord) -> StoreResult<()> {
        let (id, account) = (webhook.webhook.uuid, webhook.webhook.account_uuid);
        insert_static(INSERT.as_str(), WebhookRow::new(webhook)?)
            .execute(&self.pool)
            .await
            .map_err(write_error("webhook create", || Subject::webhook(id, account)))?;
        self.wrote();
        Ok(())
    }

    async fn webhook_fetch(&self, account: Option<AccountId>, id: WebhookId) -> StoreResult<Option<WebhookRecord>> {
        let sql = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE uuid = $1 AND ($2::text IS NULL OR account_uuid = $2)"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(account.map(|a| a.to_string()))
            .fetch_optional(&self.pool)
            .await
            .map_err(db("webhook fetch"))?;
        row.as_ref().map(record::<WebhookRow>).transpose()
    }

    async fn webhook_list(&self, account: Option<AccountId>, paging: Paging) -> StoreResult<Page<WebhookRecord>> {
        let query = sql::webhook_list(Placeholders::Dollar, account, paging);
        self.list(query, "webhook list", record::<WebhookRow>).await
    }

    async fn webhook_list_all(&self) -> StoreResult<Vec<WebhookRecord>> {
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY created_at_ms, uuid");
        let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(&self.pool).await.map_err(db("webhook list all"))?;
        rows.iter().map(record::<WebhookRow>).collect()
    }

    async fn webhook_delete(&self, account: Option<AccountId>, id: WebhookId) -> StoreResult<Option<WebhookRecord>> {
        let sql = format!(
            "DELETE FROM webhooks WHERE uuid = $1 AND ($2::text IS NULL OR account_uuid = $2) RETURNING {WEBHOOK_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(account.map(|a| a.to_string()))
            .fetch_optional(&self.pool)
            .await
            .map_err(db("webhook delete"))?;
        self.wrote();
        row.as_ref().map(record::<WebhookRow>).transpose()
    }

    async fn webhook_outbox_cursor(&self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT cursor FROM webhook_outbox_state")
            .fetch_one(&self.pool)
            .await
            .map_err(db("webhook outbox cursor"))
    }

    async fn webhook_fanout(&self, deliveries: &[WebhookDelivery], cursor: i64) -> StoreResult<()> {
        // Fenced: a stale leader's fan-out must not advance the cursor or add
        // deliveries behind the current leader's back.
        let mut tx = self.begin_write("webhook fanout").await?;
        for d in deliveries {
            DeliveryRow::new(d)
                .bind_pg(sqlx::query(AssertSqlSafe(FANOUT.as_str())))
                .execute(&mut *tx)
                .await
                .map_err(db("webhook fanout"))?;
        }
        sqlx::query("UPDATE webhook_outbox_state SET cursor = GREATEST(cursor, $1)")
            .bind(cursor)
            .execute(&mut *tx)
            .await
            .map_err(db("webhook fanout"))?;
        tx.commit().await.map_err(db("webhook fanout"))?;
        self.wrote();
        Ok(())
    }

    async fn webhook_delivery_due(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<WebhookDelivery>> {
        let rows = sqlx::query(AssertSqlSafe(DUE.as_str()))
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db("webhook delivery due"))?;
        rows.iter().map(record::<DeliveryRow>).collect()
    }

    async fn webhook_delivery_update(&self, delivery: &WebhookDelivery) -> StoreResult<()> {
        let r = DeliveryRow::new(delivery);
        // Fenced: a stale leader must not record an attempt (and so, for a delivery it
        // sent late, overwrite what the current leader recorded for the same one).
        let mut tx = self.begin_write("webhook delivery update").await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $2, attempts = $3, status_code = $4, last_error = $5, \
             next_attempt_at_ms = $6, delivered_at_ms = $7, updated_at_ms = $8 WHERE uuid = $1",
        )
        .bind(r.uuid)
        .bind(r.status)
        .bind(r.attempts)
        .bind(r.status_code)
        .bind(r.last_error)
        .bind(r.next_attempt_at_ms)
        .bind(r.delivered_at_ms)
        .bind(r.updated_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(db("webhook delivery update"))?;
        tx.commit().await.map_err(db("webhook delivery update"))?;
        self.wrote();
        Ok(())
    }

    async fn webhook_delivery_list(
        &self,
        account: Option<AccountId>,
        webhook: WebhookId,
        paging: Paging,
    ) -> StoreResult<Option<Page<WebhookDelivery>>> {
        let id = webhook.to_string();
        let mut tx = self.pool.begin().await.map_err(db("webhook delivery list"))?;
        let exists: bool = sqlx::query_scalar(
            "SELECT COUNT(*) > 0 FROM webhooks WHERE uuid = $1 AND ($2::text IS NULL OR account_uuid = $2)",
        )
        .bind(&id)
        .bind(account.map(|a| a.to_string()))
        .fetch_one(&mut *tx)
        .await
        .map_err(db("webhook delivery list"))?;
        if !exists {
            return Ok(None);
        }
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE webhook_uuid = $1")
            .bind(&id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db("webhook delivery list"))?;
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_uuid = $1 {} LIMIT $2 OFFSET $3",
            delivery_order(paging)
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(&id)
            .bind(i64::from(paging.limit))
            .bind(i64::try_from(paging.offset()).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(db("webhook delivery list"))?;
        tx.commit().await.map_err(db("webhook delivery list"))?;
        let items = rows.iter().map(record::<DeliveryRow>).collect::<StoreResult<_>>()?;
        Ok(Some(Page { items, total: u64::try_from(total).unwrap_or(0) }))
    }
}
