//! Optional objects shown as what they are: utoipa writes an `Option<T>` field whose `T`
//! is a named schema as `oneOf: [null, $ref]`, which the Swagger UI draws as "One of
//! #0 null, #1 ...". An optional enum becomes the enum with `null` among its values, an
//! optional object `anyOf: [$ref, null]` with the description beside it; an optional
//! request body is the schema itself, not required.

use serde_json::{Value, json};

/// The document (as JSON) with its optional fields rewritten.
pub(super) fn tidy(doc: &mut Value) {
    let schemas = doc["components"]["schemas"].clone();
    if let Some(all) = doc["components"]["schemas"].as_object_mut() {
        for schema in all.values_mut() {
            // `get_mut`: indexing would add `"properties": null` where there is none.
            if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
                for prop in props.values_mut() {
                    if let Some(better) = optional(prop, &schemas) {
                        *prop = better;
                    }
                }
            }
        }
    }
    if let Some(paths) = doc["paths"].as_object_mut() {
        for op in paths
            .values_mut()
            .filter_map(Value::as_object_mut)
            .flat_map(|item| item.values_mut())
        {
            let Some(body) = op.get_mut("requestBody") else {
                continue;
            };
            let Some(content) = body["content"].as_object_mut() else {
                continue;
            };
            let mut optional_body = false;
            for media in content.values_mut() {
                if let Some(target) = null_or_ref(&media["schema"]) {
                    media["schema"] = json!({"$ref": target});
                    optional_body = true;
                }
            }
            if optional_body {
                body["required"] = json!(false);
            }
        }
    }
}

/// `$ref` of a `oneOf: [null, {$ref}]`.
fn null_or_ref(schema: &Value) -> Option<String> {
    let one_of = schema.get("oneOf")?.as_array()?;
    if one_of.len() != 2 || !one_of.iter().any(|s| s == &json!({"type": "null"})) {
        return None;
    }
    one_of
        .iter()
        .find_map(|s| s.get("$ref")?.as_str().map(String::from))
}

fn optional(prop: &Value, schemas: &Value) -> Option<Value> {
    let target = null_or_ref(prop)?;
    let description = prop["oneOf"]
        .as_array()?
        .iter()
        .find_map(|s| s.get("description").cloned());
    let name = target.rsplit('/').next()?;
    let named = &schemas[name];
    let mut better = match named["enum"].as_array() {
        Some(values) if named["type"] == "string" => {
            let mut values = values.clone();
            values.push(Value::Null);
            json!({"type": ["string", "null"], "enum": values})
        }
        _ => json!({"anyOf": [{"$ref": target}, {"type": "null"}]}),
    };
    if let Some(d) = description {
        better["description"] = d;
    }
    Some(better)
}
