//! Filters, mappings and dedup keys: JMESPath expressions (the `jmespath` crate)
//! evaluated over `{"headers": {...}, "body": ..., "query": {...}}`. Header names are
//! lower case, so `headers."x-github-event"`.

use serde_json::Value;

/// Checks that an expression compiles; the error names the problem.
pub fn check(expression: &str) -> Result<(), String> {
    jmespath::compile(expression)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Evaluates an expression; `null` when it selects nothing.
pub fn eval(expression: &str, context: &Value) -> Result<Value, String> {
    let compiled = jmespath::compile(expression).map_err(|e| e.to_string())?;
    let result = compiled.search(context).map_err(|e| e.to_string())?;
    serde_json::to_value(&*result).map_err(|e| e.to_string())
}

/// Whether a value counts as true for a filter (JMESPath's truthiness: not null, false,
/// an empty string, array or object).
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Number(_) => true,
    }
}

/// A dedup key from a value: strings as they are, other scalars as JSON; none for null.
pub fn key_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.chars().take(500).collect()),
        other => Some(other.to_string().chars().take(500).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_and_mappings_read_headers_body_and_query() {
        let ctx = json!({"headers": {"x-github-event": "pull_request"}, "body": {"action": "opened", "pull_request": {"number": 42}}, "query": {}});
        assert!(truthy(&eval("body.action == 'opened'", &ctx).unwrap()));
        assert!(!truthy(&eval("body.action == 'closed'", &ctx).unwrap()));
        assert_eq!(eval("body.pull_request.number", &ctx).unwrap(), json!(42));
        assert_eq!(
            eval("headers.\"x-github-event\"", &ctx).unwrap(),
            json!("pull_request")
        );
        assert_eq!(eval("body.missing", &ctx).unwrap(), Value::Null);
        assert!(check("body.[").is_err());
    }
}
