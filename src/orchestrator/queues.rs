//! Queues in Orchestrator: the definitions of a folder, AddQueueItem, and reading items
//! back (one by Id, or a filtered list by Reference, which takes from the tenant's list
//! budget like job lists).

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::client::OrchestratorClient;
use super::error::OrchestratorError;
use super::models::ODataList;
use super::odata::reference_filter;
use crate::domain::folder::FolderRef;
use crate::traffic::{Class, Priority};

/// `QueueItemDataDto`: the fields the gateway sets.
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct QueueItemData {
    /// The queue's name.
    pub name: String,
    /// `High`, `Normal` or `Low`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// The item's data.
    pub specific_content: Map<String, Value>,
    /// Not to be processed before (ISO 8601).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defer_date: Option<String>,
    /// To be processed by (ISO 8601).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_date: Option<String>,
    /// The risk SLA date (ISO 8601).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk_sla_date: Option<String>,
    /// At most 128 characters; unique in a queue that enforces unique references.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// `{"itemData": QueueItemDataDto}`.
#[derive(Debug, Clone, Serialize)]
pub struct AddQueueItemRequest {
    /// The item.
    #[serde(rename = "itemData")]
    pub item_data: QueueItemData,
}

/// `QueueItemDto`, the fields the gateway reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueueItem {
    /// Int64 id.
    pub id: i64,
    /// The item's Key (GUID), shared by its retries.
    pub key: Option<String>,
    /// `New`, `InProgress`, `Failed`, `Successful`, `Abandoned`, `Retried`, `Deleted`.
    pub status: String,
    /// Our Reference.
    pub reference: Option<String>,
    /// The queue's id.
    pub queue_definition_id: Option<i64>,
    /// What the robot set as output.
    #[serde(default)]
    pub output: Option<Value>,
    /// Why processing failed.
    #[serde(default)]
    pub processing_exception: Option<Value>,
    /// Retries so far.
    #[serde(default)]
    pub retry_number: Option<i32>,
    /// The item this one retries.
    #[serde(default)]
    pub ancestor_id: Option<i64>,
}

/// `QueueDefinitionDto`, the fields the gateway reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueueDefinition {
    /// Int64 id.
    pub id: i64,
    /// The queue's name.
    pub name: String,
    /// A second item with the same Reference is refused (error 1016).
    #[serde(default)]
    pub enforce_unique_reference: bool,
    /// JSON Schema of `SpecificContent`, as a string.
    pub specific_data_json_schema: Option<String>,
    /// JSON Schema of the output, as a string.
    pub output_data_json_schema: Option<String>,
    /// Retries of a failed item.
    pub max_number_of_retries: Option<i32>,
}

impl OrchestratorError {
    /// Orchestrator's answer to a Reference already used in a queue that enforces unique
    /// references: the item is there already.
    pub fn is_duplicate_reference(&self) -> bool {
        self.error_code() == Some("1016")
    }
}

impl QueueDefinition {
    /// What the gateway keeps of it: the schemas parsed (one that is not a JSON object is
    /// left out, as Orchestrator sends an empty string for none).
    pub fn schema(&self) -> crate::domain::queue::QueueSchema {
        let parse = |s: &Option<String>| {
            s.as_deref()
                .filter(|s| !s.trim().is_empty())
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
                .filter(Value::is_object)
        };
        crate::domain::queue::QueueSchema {
            id: self.id,
            name: self.name.clone(),
            unique_references: self.enforce_unique_reference,
            content_schema: parse(&self.specific_data_json_schema),
            output_schema: parse(&self.output_data_json_schema),
            max_retries: self.max_number_of_retries.unwrap_or(0),
        }
    }
}

impl OrchestratorClient {
    /// `GET /odata/QueueDefinitions` in a folder.
    pub async fn queue_definitions(
        &self,
        token: &str,
        folder: &FolderRef,
    ) -> Result<Vec<QueueDefinition>, OrchestratorError> {
        let req = self
            .request(Method::GET, "/odata/QueueDefinitions", token, Some(folder))
            .query(&[("$top", "1000")]);
        Ok(self
            .send::<ODataList<QueueDefinition>>(req, false, Class::Call, Priority::Routine)
            .await?
            .value)
    }

    /// `POST /odata/Queues/UiPathODataSvc.AddQueueItem`: the item created. A write, so a
    /// failure after sending is `Ambiguous`: look the Reference up before adding again.
    pub async fn add_queue_item(
        &self,
        token: &str,
        folder: &FolderRef,
        body: &AddQueueItemRequest,
    ) -> Result<QueueItem, OrchestratorError> {
        let req = self
            .request(
                Method::POST,
                "/odata/Queues/UiPathODataSvc.AddQueueItem",
                token,
                Some(folder),
            )
            .json(body);
        self.send(req, true, Class::Start, Priority::Routine).await
    }

    /// `GET /odata/QueueItems({id})`.
    pub async fn queue_item(
        &self,
        token: &str,
        folder: &FolderRef,
        id: i64,
    ) -> Result<QueueItem, OrchestratorError> {
        let req = self.request(
            Method::GET,
            &format!("/odata/QueueItems({id})"),
            token,
            Some(folder),
        );
        self.send(req, false, Class::Call, Priority::Routine).await
    }

    /// The items of queue `queue_id` that carry one of `references`: a filtered list, so
    /// it takes from the tenant's list budget.
    pub async fn queue_items_by_reference(
        &self,
        token: &str,
        folder: &FolderRef,
        queue_id: i64,
        references: &[String],
        priority: Priority,
    ) -> Result<Vec<QueueItem>, OrchestratorError> {
        let filter = format!(
            "QueueDefinitionId eq {queue_id} and ({})",
            reference_filter(references)
        );
        let req = self
            .request(Method::GET, "/odata/QueueItems", token, Some(folder))
            .query(&[("$filter", filter.as_str()), ("$top", "1000")]);
        Ok(self
            .send::<ODataList<QueueItem>>(req, false, Class::List, priority)
            .await?
            .value)
    }
}
