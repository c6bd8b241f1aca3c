//! A release's argument definitions as JSON Schema: what a process publishes in the
//! OpenAPI document, built from the same `Shape`s that `validate` checks with, so the
//! document and the check cannot disagree.

use serde_json::{Map, Value, json};

use super::{ArgumentDefinition, Shape, bare, shape};

/// The schema of one value of shape `s`.
fn of(s: &Shape) -> Value {
    match s {
        Shape::String => json!({"type": "string"}),
        Shape::Guid => json!({"type": "string", "format": "uuid"}),
        Shape::Integer { min, max } => json!({
            "type": "integer",
            "minimum": number(*min),
            "maximum": number(*max),
        }),
        Shape::Float { max } if *max < f64::MAX => json!({"type": "number", "format": "float"}),
        Shape::Float { .. } => json!({"type": "number", "format": "double"}),
        Shape::Decimal => json!({
            "type": "number",
            "format": "decimal",
            "minimum": exact("-79228162514264337593543950335"),
            "maximum": exact("79228162514264337593543950335"),
        }),
        Shape::Boolean => json!({"type": "boolean"}),
        Shape::DateTime => json!({"type": "string", "format": "date-time"}),
        Shape::Array(inner) => json!({"type": "array", "items": of(inner)}),
        Shape::Object => json!({"type": "object"}),
        Shape::Any => json!({}),
        Shape::Nullable(inner) => or_null(of(inner)),
    }
}

/// A number kept exactly as written (serde_json's `arbitrary_precision`).
fn exact(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn number(n: i128) -> Value {
    i64::try_from(n)
        .map(Value::from)
        .or_else(|_| u64::try_from(n).map(Value::from))
        .unwrap_or(Value::Null)
}

/// Adds `null` to a schema's type (a schema with no type takes anything already).
fn or_null(mut schema: Value) -> Value {
    if let Some(t) = schema.get("type").cloned() {
        let mut types = match t {
            Value::Array(types) => types,
            one => vec![one],
        };
        if !types.contains(&json!("null")) {
            types.push(json!("null"));
        }
        schema["type"] = Value::Array(types);
    }
    schema
}

/// An example value of shape `s` that `validate` accepts.
fn sample(s: &Shape) -> Value {
    match s {
        Shape::String | Shape::Any => json!("text"),
        Shape::Guid => json!("3fa85f64-5717-4562-b3fc-2c963f66afa6"),
        Shape::Integer { .. } => json!(1),
        Shape::Float { .. } => json!(1.5),
        Shape::Decimal => json!(12.5),
        Shape::Boolean => json!(false),
        Shape::DateTime => json!("2026-01-31T09:00:00Z"),
        Shape::Array(inner) => json!([sample(inner)]),
        Shape::Object => json!({}),
        Shape::Nullable(inner) => sample(inner),
    }
}

/// Whether a caller must give the argument: required by the workflow, with no default
/// there nor in the process's default input.
pub fn must_give(def: &ArgumentDefinition, defaults: &Map<String, Value>) -> bool {
    def.required && !def.has_default && !defaults.contains_key(&def.name)
}

/// The schema of a `/run` body for a process: every input argument typed, the ones a
/// caller must give required, nothing else allowed, and an example that validates.
pub fn input(definitions: &[ArgumentDefinition], defaults: &Map<String, Value>) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut example = Map::new();
    for def in definitions {
        let s = shape(&def.type_name);
        let mut schema = of(&s);
        if !def.required && s.takes_null() {
            schema = or_null(schema);
        }
        let default = defaults.get(&def.name);
        let mut about = format!("{}.", bare(&def.type_name));
        if must_give(def, defaults) {
            about.push_str(" Required.");
            required.push(json!(def.name));
        } else if let Some(d) = default {
            about.push_str(" Optional: the process's default input gives it.");
            schema["default"] = d.clone();
        } else if def.has_default || def.required {
            about.push_str(" Optional: the workflow has a default.");
        } else {
            about.push_str(" Optional.");
        }
        if s == Shape::Decimal {
            about.push_str(" Kept exactly as written: at most 28 digits after the point.");
        }
        schema["description"] = json!(about);
        example.insert(
            def.name.clone(),
            default.cloned().unwrap_or_else(|| sample(&s)),
        );
        properties.insert(def.name.clone(), schema);
    }
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
        "example": example,
    })
}

/// The schema of a finished job's `output`: each output argument typed (any may be null).
pub fn output(definitions: &[ArgumentDefinition]) -> Value {
    let properties: Map<String, Value> = definitions
        .iter()
        .map(|def| {
            let mut schema = or_null(of(&shape(&def.type_name)));
            schema["description"] = json!(format!("{}.", bare(&def.type_name)));
            (def.name.clone(), schema)
        })
        .collect();
    json!({"type": ["object", "null"], "properties": properties})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, type_name: &str, required: bool) -> ArgumentDefinition {
        ArgumentDefinition {
            name: name.into(),
            type_name: type_name.into(),
            required,
            has_default: false,
        }
    }

    #[test]
    fn each_dotnet_type_has_its_json_schema() {
        let defs = [
            def("s", "System.String", true),
            def("i", "System.Int32", true),
            def("b", "System.Byte", false),
            def("d", "System.Decimal", false),
            def("t", "System.DateTime", false),
            def("l", "System.Int64[]", false),
            def(
                "n",
                "System.Nullable`1[[System.Int32, System.Private.CoreLib]]",
                false,
            ),
            def(
                "m",
                "System.Collections.Generic.Dictionary`2[System.String,System.Object]",
                false,
            ),
        ];
        let schema = input(&defs, &Map::new());
        let p = &schema["properties"];
        assert_eq!(schema["required"], json!(["s", "i"]));
        assert_eq!(p["s"]["type"], json!("string"));
        assert_eq!(p["i"]["maximum"], json!(i32::MAX));
        assert_eq!(p["b"]["minimum"], json!(0));
        assert_eq!(p["d"]["format"], json!("decimal"));
        assert_eq!(
            p["d"]["maximum"].to_string(),
            "79228162514264337593543950335"
        );
        assert_eq!(p["t"]["format"], json!("date-time"));
        assert_eq!(p["l"]["type"], json!(["array", "null"]));
        assert_eq!(p["l"]["items"]["type"], json!("integer"));
        assert_eq!(p["n"]["type"], json!(["integer", "null"]));
        assert_eq!(p["m"]["type"], json!(["object", "null"]));
        assert_eq!(schema["additionalProperties"], json!(false));
    }

    #[test]
    fn the_example_passes_the_check_it_documents() {
        let defs = [
            def("s", "System.String", true),
            def("g", "System.Guid", true),
            def("i", "System.UInt64", true),
            def("f", "System.Single", true),
            def("d", "System.Decimal", true),
            def("t", "System.DateTimeOffset", true),
            def("a", "System.Boolean[]", true),
            def("n", "System.Nullable`1[System.Boolean]", true),
        ];
        let defaults = Map::from_iter([("s".to_string(), json!("from the process"))]);
        let schema = input(&defs, &defaults);
        let example = schema["example"].as_object().unwrap();
        assert_eq!(example["s"], json!("from the process"));
        assert!(!schema["required"].as_array().unwrap().contains(&json!("s")));
        super::super::validate(&defs, &defaults, example).expect("the example validates");
    }
}
