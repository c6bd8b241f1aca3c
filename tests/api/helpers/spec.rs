//! UiPath's own OpenAPI document (`../shared/orchestrator-openapi/`), to validate the
//! simulator's bodies and the requests the gateway sends against it.

use serde_json::{Value, json};

const SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/orchestrator-openapi/orchestrator-cloud-v20.0-openapi3.json"
);

pub struct Schemas(Value);

impl Schemas {
    pub fn load() -> Self {
        let text = std::fs::read_to_string(SPEC)
            .expect("the shared OpenAPI document is beside the project");
        let spec: Value = serde_json::from_str(&text).unwrap();
        let mut components = spec["components"].clone();
        nullable_to_types(&mut components);
        any_dictionary_values(&mut components);
        Schemas(components)
    }

    #[track_caller]
    pub fn check(&self, schema: &str, instance: &Value) {
        let root = json!({"$ref": format!("#/components/schemas/{schema}"), "components": self.0});
        let validator = jsonschema::draft4::new(&root).expect("the schema compiles");
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{schema} does not validate:\n{}\n{instance:#}",
            errors.join("\n")
        );
        // The check must be able to fail: a wrong type for a known field is refused.
        if let Value::Object(map) = instance
            && map.contains_key("Id")
        {
            let mut broken = instance.clone();
            broken["Id"] = json!("not a number");
            assert!(
                validator.iter_errors(&broken).next().is_some(),
                "{schema} accepted a string Id"
            );
        }
    }
}

/// UiPath's document writes .NET `Dictionary<string, object>` (a queue item's
/// `SpecificContent` and `Output`) as `additionalProperties: {"type": "object"}`, where
/// .NET's `object` is any value: `{"InvoiceNumber": "INV-1"}` is what Orchestrator takes
/// and sends. Such values may be anything.
fn any_dictionary_values(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.get("additionalProperties") == Some(&json!({"type": "object"})) {
                map.insert("additionalProperties".into(), json!({}));
            }
            map.values_mut().for_each(any_dictionary_values);
        }
        Value::Array(items) => items.iter_mut().for_each(any_dictionary_values),
        _ => {}
    }
}

/// OpenAPI 3.0 marks null with `nullable: true`; JSON Schema wants `null` in `type`.
/// UiPath's document lost `nullable` in its Swagger 2 conversion, while Orchestrator
/// (like any .NET service) sends `null` for unset optional fields, as its own examples
/// show: so a property that is not `required` may also be null.
fn nullable_to_types(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let required: Vec<String> = map
                .get("required")
                .and_then(Value::as_array)
                .map(|r| {
                    r.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            if let Some(Value::Object(props)) = map.get_mut("properties") {
                for (name, prop) in props.iter_mut() {
                    if !required.contains(name) {
                        let inner = prop.take();
                        *prop = json!({"anyOf": [inner, {"type": "null"}]});
                    }
                }
            }
            if map.remove("nullable") == Some(Value::Bool(true))
                && let Some(Value::String(t)) = map.get("type").cloned()
            {
                map.insert("type".into(), json!([t, "null"]));
                if let Some(Value::Array(e)) = map.get_mut("enum") {
                    e.push(Value::Null);
                }
            }
            map.values_mut().for_each(nullable_to_types);
        }
        Value::Array(items) => items.iter_mut().for_each(nullable_to_types),
        _ => {}
    }
}
