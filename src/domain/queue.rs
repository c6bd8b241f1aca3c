//! Queue mappings: a name for an Orchestrator queue in a folder, what `POST /queues/{name}`
//! adds items to. A queue mapping is stored beside the processes (one table of named
//! targets, one name space); this is what an operator sends, what the queue says about
//! itself, and how an item's content is checked against the queue's JSON Schema.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::domain::problem::FieldProblem;
use crate::domain::process::{JobOptions, NewProcess, ReleaseSelector};

/// The longest Reference Orchestrator keeps.
pub const MAX_REFERENCE: usize = 128;

/// A queue mapping as operators send it.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "InvoicesToBook", "connection": "demo", "folder": "Finance/AP", "queue": "InvoicesToBook",
    "default_content": {"Currency": "EUR"}, "priority": "Normal", "max_wait_seconds": 60
}))]
pub struct QueueMappingInput {
    /// The `{name}` of `POST /queues/{name}`: letters, digits, `-`, `_` (shared with
    /// processes: a queue mapping and a process cannot have the same name).
    pub name: Option<String>,
    /// The connection's name.
    pub connection: Option<String>,
    /// The folder: a path like `Finance/AP`, a numeric id or a GUID key.
    pub folder: Option<String>,
    /// The queue's name in Orchestrator (its `QueueDefinition.Name`).
    pub queue: Option<String>,
    /// Content every item starts from; the body's fields are laid over it.
    pub default_content: Option<Map<String, Value>>,
    /// The items' default priority: `Low`, `Normal` (Orchestrator's default) or `High`.
    pub priority: Option<String>,
    /// Longest wait a caller may ask for, in seconds (default 60, at most 3600).
    pub max_wait_seconds: Option<i32>,
    /// Default callback URL, called when an item ends.
    pub callback_url: Option<String>,
    /// The `whsec_` secret that signs callbacks. Write-only: generated when left out on
    /// create (shown once), kept on replace.
    #[schema(value_type = Option<String>, write_only)]
    pub callback_secret: Option<secrecy::SecretString>,
}

impl QueueMappingInput {
    /// Checks every field, naming each problem; the mapping as the processes table keeps it.
    pub fn validate(self) -> Result<NewProcess, Vec<FieldProblem>> {
        let queue = self.queue.clone().unwrap_or_default();
        let priority = self.priority.clone();
        let mut problems = Vec::new();
        if queue.trim().is_empty() || queue.len() > 512 {
            problems.push(FieldProblem {
                field: "queue".into(),
                problem: "required: the queue's name in Orchestrator (at most 512 characters)"
                    .into(),
            });
        }
        if priority
            .as_deref()
            .is_some_and(|p| !matches!(p, "Low" | "Normal" | "High"))
        {
            problems.push(FieldProblem {
                field: "priority".into(),
                problem: "must be Low, Normal or High".into(),
            });
        }
        let as_process = crate::domain::process::ProcessInput {
            name: self.name,
            connection: self.connection,
            folder: self.folder,
            release: Some(ReleaseSelector {
                name: Some(queue.clone()),
                ..Default::default()
            }),
            default_input: self.default_content,
            job_options: Some(JobOptions {
                priority: None,
                ..Default::default()
            }),
            max_wait_seconds: self.max_wait_seconds,
            callback_url: self.callback_url,
            callback_secret: self.callback_secret,
        };
        match as_process.validate() {
            Ok(mut new) if problems.is_empty() => {
                new.release = ReleaseSelector::default();
                new.queue = Some(queue);
                new.job_options.priority = priority;
                Ok(new)
            }
            Ok(_) => Err(problems),
            Err(more) => {
                problems.extend(more.into_iter().map(|p| match p.field.as_str() {
                    "default_input" => FieldProblem {
                        field: "default_content".into(),
                        ..p
                    },
                    _ => p,
                }));
                Err(problems)
            }
        }
    }
}

/// What a queue says about itself (`QueueDefinitionDto`), as the gateway keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueSchema {
    /// The queue's Id in Orchestrator.
    pub id: i64,
    /// The queue's name.
    pub name: String,
    /// A second item with the same Reference is refused.
    pub unique_references: bool,
    /// The JSON Schema of an item's content, if the queue has one.
    #[schema(value_type = Option<Object>)]
    pub content_schema: Option<Value>,
    /// The JSON Schema of an item's output, if the queue has one.
    #[schema(value_type = Option<Object>)]
    pub output_schema: Option<Value>,
    /// Automatic retries of an item that fails with an application exception.
    pub max_retries: i32,
}

impl QueueSchema {
    /// Checks an item's content against the queue's schema: each problem names the field
    /// (the property path) and says what is wrong, never echoing the value.
    pub fn content_problems(&self, content: &Map<String, Value>) -> Vec<FieldProblem> {
        let Some(schema) = &self.content_schema else {
            return Vec::new();
        };
        let Ok(validator) = jsonschema::validator_for(schema) else {
            // A schema we cannot compile is Orchestrator's to apply.
            return Vec::new();
        };
        let content = Value::Object(content.clone());
        validator
            .iter_errors(&content)
            .map(|e| {
                let path = e
                    .instance_path()
                    .as_str()
                    .trim_start_matches('/')
                    .replace('/', ".");
                let field = match e.kind() {
                    jsonschema::error::ValidationErrorKind::Required { property } => {
                        let name = property.as_str().unwrap_or_default();
                        if path.is_empty() {
                            name.to_string()
                        } else {
                            format!("{path}.{name}")
                        }
                    }
                    _ if path.is_empty() => "(body)".into(),
                    _ => path,
                };
                FieldProblem {
                    field,
                    problem: format!("{} (the queue's schema)", e.masked()),
                }
            })
            .collect()
    }
}

/// How a caller adds an item, besides its content (query parameters of `POST /queues/{name}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ItemOptions {
    /// `Low`, `Normal` or `High` (else the mapping's priority).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// Not to be processed before (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defer_date: Option<String>,
    /// To be processed by (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_date: Option<String>,
    /// The risk SLA date (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk_sla_date: Option<String>,
}

impl ItemOptions {
    /// Checks the priority and dates, naming each problem.
    pub fn problems(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        if self
            .priority
            .as_deref()
            .is_some_and(|p| !matches!(p, "Low" | "Normal" | "High"))
        {
            problems.push(FieldProblem {
                field: "priority".into(),
                problem: "must be Low, Normal or High".into(),
            });
        }
        for (field, value) in [
            ("defer_date", &self.defer_date),
            ("due_date", &self.due_date),
            ("risk_sla_date", &self.risk_sla_date),
        ] {
            if value
                .as_deref()
                .is_some_and(|v| chrono::DateTime::parse_from_rfc3339(v).is_err())
            {
                problems.push(FieldProblem {
                    field: field.into(),
                    problem: "must be an RFC 3339 date-time, like 2026-12-31T17:00:00Z".into(),
                });
            }
        }
        problems
    }
}

/// Checks a caller's reference: at most 128 characters, no control characters.
pub fn reference_problem(reference: &str) -> Option<FieldProblem> {
    (reference.is_empty()
        || reference.chars().count() > MAX_REFERENCE
        || reference.chars().any(char::is_control))
    .then(|| FieldProblem {
        field: "reference".into(),
        problem: format!("must be 1-{MAX_REFERENCE} characters, without control characters"),
    })
}

/// What the ledger keeps as a queue item's input: its content and how it was to be added.
pub fn item_input(content: Map<String, Value>, options: &ItemOptions) -> Map<String, Value> {
    let mut doc = Map::new();
    doc.insert("content".into(), Value::Object(content));
    if let Ok(Value::Object(o)) = serde_json::to_value(options) {
        doc.extend(o);
    }
    doc
}

/// The content and options of a queue item's recorded input (`item_input` inverted).
pub fn split_item_input(input: &Value) -> (Map<String, Value>, ItemOptions) {
    let content = input
        .get("content")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let options = serde_json::from_value(input.clone()).unwrap_or_default();
    (content, options)
}

impl QueueSchema {
    /// Checks a webhook's mapping (content field -> expression) against the queue's schema:
    /// it may only name fields the schema has when the schema allows no others, and must
    /// give what the schema requires unless the mapping's default content does.
    pub fn mapping_problems(
        &self,
        mapping: &std::collections::BTreeMap<String, String>,
        defaults: &Map<String, Value>,
    ) -> Vec<FieldProblem> {
        let Some(schema) = &self.content_schema else {
            return Vec::new();
        };
        let properties = schema["properties"].as_object();
        let mut problems = Vec::new();
        if schema["additionalProperties"] == Value::Bool(false)
            && let Some(properties) = properties
        {
            let has = properties.keys().cloned().collect::<Vec<_>>().join(", ");
            problems.extend(
                mapping
                    .keys()
                    .filter(|k| !properties.contains_key(*k))
                    .map(|k| FieldProblem {
                        field: format!("mapping.{k}"),
                        problem: format!(
                            "queue `{}` has no content field `{k}`; it has: {has}",
                            self.name
                        ),
                    }),
            );
        }
        let missing: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|r| !mapping.contains_key(*r) && !defaults.contains_key(*r))
            .collect();
        if !missing.is_empty() {
            problems.push(FieldProblem {
                field: "mapping".into(),
                problem: format!(
                    "queue `{}` requires {} in an item's content (no default content gives it); map it",
                    self.name,
                    missing.join(", ")
                ),
            });
        }
        problems
    }
}

/// A queue item's status in ledger terms: `New` is pending, `InProgress` running,
/// `Successful` successful, `Failed` and `Abandoned` faulted, `Deleted` stopped. `Retried`
/// (and a status we do not know) is None: the item's retry carries on for it.
pub fn ledger_state(status: &str) -> Option<crate::domain::job_state::JobState> {
    use crate::domain::job_state::JobState;
    Some(match status {
        "New" => JobState::Pending,
        "InProgress" => JobState::Running,
        "Successful" => JobState::Successful,
        "Failed" | "Abandoned" => JobState::Faulted,
        "Deleted" => JobState::Stopped,
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
