//! `/v1/webhooks`: endpoints and their deliveries.

use gantry_types::WebhookId;
use gantry_types::list::ListResponse;
use gantry_types::webhook::{Webhook, WebhookDelivery};
use reqwest::Method;

use crate::{Client, ClientError};

impl Client {
    /// `POST /v1/webhooks`; the answer carries the signing secret (the only time).
    pub async fn create_webhook(&self, body: &serde_json::Value) -> Result<Webhook, ClientError> {
        self.send(Method::POST, "/v1/webhooks", &[], Some(body)).await
    }

    /// `GET /v1/webhooks` with paging pairs.
    pub async fn list_webhooks(&self, query: &[(String, String)]) -> Result<ListResponse<Webhook>, ClientError> {
        self.send(Method::GET, "/v1/webhooks", query, None).await
    }

    /// `GET /v1/webhooks/{uuid}`.
    pub async fn get_webhook(&self, id: WebhookId) -> Result<Webhook, ClientError> {
        self.send(Method::GET, &format!("/v1/webhooks/{id}"), &[], None).await
    }

    /// `DELETE /v1/webhooks/{uuid}`.
    pub async fn delete_webhook(&self, id: WebhookId) -> Result<Webhook, ClientError> {
        self.send(Method::DELETE, &format!("/v1/webhooks/{id}"), &[], None).await
    }

    /// `GET /v1/webhooks/{uuid}/deliveries` with paging pairs.
    pub async fn list_webhook_deliveries(
        &self,
        id: WebhookId,
        query: &[(String, String)],
    ) -> Result<ListResponse<WebhookDelivery>, ClientError> {
        self.send(Method::GET, &format!("/v1/webhooks/{id}/deliveries"), query, None).await
    }
}
