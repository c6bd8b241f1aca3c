//! The served OpenAPI document: the static one, plus one `POST /run/{name}` operation per
//! configured process, typed from its release's argument definitions (the schema `/run`
//! and `/hooks` validate with). Built on each request for `/openapi.json`, so it follows
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

/// The static document with an operation for each process.
pub fn document(base: &Value, processes: &[ProcessRow]) -> Value {
    let mut doc = base.clone();
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
    for status in ["200", "202"] {
        let pointer = format!("/responses/{status}/content/application~1json/schema");
        if let Some(answer) = op.pointer_mut(&pointer) {
            *answer = json!({"allOf": [
                answer.clone(),
                {"type": "object", "properties": {"output": output}},
            ]});
        }
    }
    op
}
