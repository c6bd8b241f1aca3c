//! The served OpenAPI document: the static one, plus one `POST /run/{name}` operation per
//! configured process, typed from its release's argument definitions (the schema `/run`
//! and `/hooks` validate with), and one `POST /queues/{name}` per queue mapping, typed
//! from the queue's content and output schemas. Built on each request for `/openapi.json`, so it follows
//! processes as they are saved and releases as they are looked up again.

use serde_json::{Map, Value, json};

use crate::domain::arguments::schema;
use crate::storage::processes::ProcessRow;

/// The static document as JSON (`openapi::spec_value`), kept by the server:
/// `/openapi.json` adds the processes. The last document rendered is kept with the
/// generation of the lookups cache it was read under, so an unchanged configuration is
/// served without reading the processes or building the document again (`/openapi.json`
/// needs no credentials and is not rate-limited).
pub struct Static {
    pub base: Value,
    rendered: std::sync::Mutex<Option<(u64, actix_web::web::Bytes)>>,
}

impl Static {
    pub fn new(base: Value) -> Self {
        Self {
            base,
            rendered: std::sync::Mutex::new(None),
        }
    }

    /// The document rendered under `generation`, if it is the last one kept.
    pub fn rendered(&self, generation: u64) -> Option<actix_web::web::Bytes> {
        let kept = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        kept.as_ref()
            .filter(|(g, _)| *g == generation)
            .map(|(_, b)| b.clone())
    }

    /// Keeps `doc`, read under `generation`.
    pub fn keep(&self, generation: u64, doc: actix_web::web::Bytes) {
        *self.rendered.lock().unwrap_or_else(|e| e.into_inner()) = Some((generation, doc));
    }
}

/// The static document with an operation for each process and each queue mapping.
pub fn document(base: &Value, processes: &[ProcessRow], queues: &[ProcessRow]) -> Value {
    let mut doc = base.clone();
    queue_operations(&mut doc, queues);
    let Some(generic) = doc["paths"]["/run/{process}"]["post"].as_object().cloned() else {
        return doc;
    };
    let names: Vec<&str> = processes.iter().map(|p| p.name.as_str()).collect();
    if let Some(params) = doc["paths"]["/run/{process}"]["post"]["parameters"].as_array_mut() {
        for p in params.iter_mut().filter(|p| p["name"] == "process") {
            p["schema"] = json!({"type": "string", "enum": names});
            if let Some(first) = names.first() {
                p["example"] = json!(first);
            }
        }
    }
    let Some(paths) = doc["paths"].as_object_mut() else {
        return doc;
    };
    for process in processes {
        paths.insert(
            format!("/run/{}", process.name),
            json!({"post": operation(&generic, process)}),
        );
    }
    doc
}

/// `POST /run/{name}`: the generic operation with the process's own body and output.
fn operation(generic: &Map<String, Value>, process: &ProcessRow) -> Value {
    let mut op = Value::Object(generic.clone());
    let defaults = process
        .default_input
        .as_object()
        .cloned()
        .unwrap_or_default();
    let (body, output, about) = match &process.resolved {
        Some(release) => (
            schema::input(&release.arguments, &defaults),
            schema::output(&release.outputs),
            format!(
                "Starts release `{}` in folder `{}`. The body is its input arguments, checked \
                 against the release's definitions before anything is recorded.",
                process
                    .release
                    .process_key
                    .as_deref()
                    .or(process.release.name.as_deref())
                    .unwrap_or_default(),
                process.folder
            ),
        ),
        None => (
            json!({"type": "object", "example": defaults}),
            json!({"type": ["object", "null"]}),
            format!(
                "Starts this process in folder `{}`. Its release has not been looked up yet{}, \
                 so its arguments are not typed here; the first run looks it up.",
                process.folder,
                process
                    .unverified_reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
        ),
    };
    let example = body["example"].clone();
    let required = body["required"].as_array().is_some_and(|r| !r.is_empty());
    op["operationId"] = json!(format!("run_{}", process.name));
    op["summary"] = json!(format!("Start {}", process.name));
    op["description"] = json!(about);
    if let Some(params) = op["parameters"].as_array_mut() {
        params.retain(|p| p["name"] != "process");
    }
    op["requestBody"] = json!({
        "description": "The input arguments",
        "required": required,
        "content": {"application/json": {"schema": body, "example": example}},
    });
    with_output(&mut op, &output);
    op
}

/// Types the `output` of the 200 and 202 answers of an operation.
fn with_output(op: &mut Value, output: &Value) {
    for status in ["200", "202"] {
        let pointer = format!("/responses/{status}/content/application~1json/schema");
        if let Some(answer) = op.pointer_mut(&pointer) {
            *answer = json!({"allOf": [
                answer.clone(),
                {"type": "object", "properties": {"output": output}},
            ]});
        }
    }
}

/// `POST /queues/<name>` for each queue mapping: the generic operation with the queue's
/// content schema as the body (the schema `POST /queues/{queue}` validates with) and its
/// output schema in the answer; the mapping names listed on the generic one.
fn queue_operations(doc: &mut Value, queues: &[ProcessRow]) {
    let Some(generic) = doc["paths"]["/queues/{queue}"]["post"].as_object().cloned() else {
        return;
    };
    let names: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
    if let Some(params) = doc["paths"]["/queues/{queue}"]["post"]["parameters"].as_array_mut() {
        for p in params.iter_mut().filter(|p| p["name"] == "queue") {
            p["schema"] = json!({"type": "string", "enum": names});
            if let Some(first) = names.first() {
                p["example"] = json!(first);
            }
        }
    }
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for queue in queues {
        let mut op = Value::Object(generic.clone());
        let defaults = queue.default_input.clone();
        let definition = queue.queue_schema.as_ref();
        let mut body = definition
            .and_then(|d| d.content_schema.clone())
            .unwrap_or_else(|| json!({"type": "object"}));
        let example = match definition.and_then(|d| d.content_schema.as_ref()) {
            Some(schema) => example_of(schema),
            None => json!({}),
        };
        // What the mapping's default content gives need not be sent.
        if let (Some(required), Some(given)) =
            (body["required"].as_array_mut(), defaults.as_object())
        {
            required.retain(|r| r.as_str().is_none_or(|r| !given.contains_key(r)));
        }
        body["example"] = example.clone();
        let output = definition
            .and_then(|d| d.output_schema.clone())
            .map(|s| json!({"anyOf": [s, {"type": "null"}]}))
            .unwrap_or_else(|| json!({"type": ["object", "null"]}));
        op["operationId"] = json!(format!("add_{}", queue.name));
        op["summary"] = json!(format!("Add an item to {}", queue.name));
        op["description"] = json!(match definition {
            Some(d) => format!(
                "Adds an item to queue `{}` in folder `{}`{}. The body is the item's content, \
                 checked against the queue's schema before anything is recorded.",
                d.name,
                queue.folder,
                if d.unique_references {
                    " (it enforces unique references)"
                } else {
                    ""
                }
            ),
            None => format!(
                "Adds an item to queue `{}` in folder `{}`. The queue has not been looked up \
                 yet{}, so its content is not typed here.",
                queue.queue.as_deref().unwrap_or_default(),
                queue.folder,
                queue
                    .unverified_reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
        });
        if let Some(params) = op["parameters"].as_array_mut() {
            params.retain(|p| p["name"] != "queue");
        }
        op["requestBody"] = json!({
            "description": "The item's content",
            "required": false,
            "content": {"application/json": {"schema": body, "example": example}},
        });
        with_output(&mut op, &output);
        paths.insert(format!("/queues/{}", queue.name), json!({"post": op}));
    }
}

/// A value that fits a (simple) JSON Schema: its required properties, each an example
/// of its type.
fn example_of(schema: &Value) -> Value {
    if let Some(e) = schema.get("example").or_else(|| schema.get("default")) {
        return e.clone();
    }
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    let kind = match &schema["type"] {
        Value::String(t) => t.as_str(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "null",
    };
    match kind {
        "object" => {
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut out = Map::new();
            for name in required {
                out.insert(name.into(), example_of(&schema["properties"][name]));
            }
            Value::Object(out)
        }
        "array" => json!([]),
        "string" if schema["format"] == "date-time" => json!("2026-12-31T17:00:00Z"),
        "string" => json!("text"),
        "integer" => json!(1),
        "number" => json!(12.5),
        "boolean" => json!(true),
        _ => Value::Null,
    }
}
