//! Filters, mappings and dedup keys: JMESPath expressions (the `jmespath` crate)
//! evaluated over `{"headers": {...}, "body": ..., "query": {...}}`. Header names are
//! lower case, so `headers."x-github-event"`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use serde_json::Value;

/// Checks that an expression compiles and calls only functions JMESPath has (a parse
/// alone accepts `split(...)`, which would fail on every delivery); the error names the
/// problem.
pub fn check(expression: &str) -> Result<(), String> {
    let compiled = jmespath::compile(expression).map_err(|e| in_our_words(&e))?;
    unknown_function(compiled.as_ast()).map_or(Ok(()), |(name, offset)| {
        Err(format!(
            "JMESPath has no function `{name}` (at position {offset}); its functions are \
             abs, avg, ceil, contains, ends_with, floor, join, keys, length, map, max, max_by, \
             merge, min, min_by, not_null, reverse, sort, sort_by, starts_with, sum, to_array, \
             to_number, to_string, type and values"
        ))
    })
}

/// The first function call, anywhere in the expression, that the runtime lacks.
fn unknown_function(ast: &jmespath::ast::Ast) -> Option<(String, usize)> {
    use jmespath::ast::Ast;
    match ast {
        Ast::Function { name, args, offset } => {
            if jmespath::DEFAULT_RUNTIME.get_function(name).is_none() {
                return Some((name.clone(), *offset));
            }
            args.iter().find_map(unknown_function)
        }
        Ast::Comparison { lhs, rhs, .. }
        | Ast::Projection { lhs, rhs, .. }
        | Ast::And { lhs, rhs, .. }
        | Ast::Or { lhs, rhs, .. }
        | Ast::Subexpr { lhs, rhs, .. } => unknown_function(lhs).or_else(|| unknown_function(rhs)),
        Ast::Condition {
            predicate, then, ..
        } => unknown_function(predicate).or_else(|| unknown_function(then)),
        Ast::Expref { ast, .. } => unknown_function(ast),
        Ast::Flatten { node, .. } | Ast::Not { node, .. } | Ast::ObjectValues { node, .. } => {
            unknown_function(node)
        }
        Ast::MultiList { elements, .. } => elements.iter().find_map(unknown_function),
        Ast::MultiHash { elements, .. } => {
            elements.iter().find_map(|kv| unknown_function(&kv.value))
        }
        Ast::Identity { .. }
        | Ast::Field { .. }
        | Ast::Index { .. }
        | Ast::Literal { .. }
        | Ast::Slice { .. } => None,
    }
}

/// A delivery's `{"headers", "body", "query"}`, converted for JMESPath when the first
/// expression is evaluated over it (its filter, a mapping or its dedup key) and kept for
/// the others; a hook with no expressions never converts it.
pub struct Context<'a> {
    value: &'a Value,
    converted: std::cell::OnceCell<Result<jmespath::Rcvar, String>>,
}

impl<'a> Context<'a> {
    pub fn new(value: &'a Value) -> Self {
        Self {
            value,
            converted: std::cell::OnceCell::new(),
        }
    }

    fn converted(&self) -> Result<&jmespath::Rcvar, String> {
        self.converted
            .get_or_init(|| Ok::<_, String>(variable(self.value)))
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// A JSON value as JMESPath's, converted directly: jmespath's own conversion goes
/// through serde, which sees a number kept as its exact text (`arbitrary_precision`)
/// as a map.
fn variable(v: &Value) -> jmespath::Rcvar {
    use jmespath::Variable as V;
    jmespath::Rcvar::new(match v {
        Value::Null => V::Null,
        Value::Bool(b) => V::Bool(*b),
        Value::Number(n) => V::Number(n.clone()),
        Value::String(s) => V::String(s.clone()),
        Value::Array(items) => V::Array(items.iter().map(variable).collect()),
        Value::Object(map) => {
            V::Object(map.iter().map(|(k, v)| (k.clone(), variable(v))).collect())
        }
    })
}

/// A JMESPath value as JSON (the inverse of `variable`).
fn json(v: &jmespath::Variable) -> Value {
    use jmespath::Variable as V;
    match v {
        V::Null => Value::Null,
        V::Bool(b) => Value::Bool(*b),
        V::Number(n) => Value::Number(n.clone()),
        V::String(s) => Value::String(s.clone()),
        V::Array(items) => Value::Array(items.iter().map(|i| json(i)).collect()),
        V::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), json(v))).collect()),
        V::Expref(_) => Value::Null,
    }
}

/// Most compiled expressions kept per thread; past this the cache starts over.
const MAX_COMPILED: usize = 1_000;

thread_local! {
    /// Compiled expressions by their text: each is compiled once per thread, not on every
    /// delivery. Only expressions that compiled are kept (hooks are checked when saved).
    static COMPILED: RefCell<HashMap<String, Rc<jmespath::Expression<'static>>>> =
        RefCell::new(HashMap::new());
}

fn compiled(expression: &str) -> Result<Rc<jmespath::Expression<'static>>, String> {
    COMPILED.with(|cache| {
        if let Some(e) = cache.borrow().get(expression) {
            return Ok(e.clone());
        }
        let e = Rc::new(jmespath::compile(expression).map_err(|e| in_our_words(&e))?);
        let mut cache = cache.borrow_mut();
        if cache.len() >= MAX_COMPILED {
            cache.clear();
        }
        cache.insert(expression.to_string(), e.clone());
        Ok(e)
    })
}

/// Evaluates an expression; `null` when it selects nothing.
pub fn eval(expression: &str, context: &Context) -> Result<Value, String> {
    let compiled = compiled(expression)?;
    // `interpret` takes the converted context as it is; `search` would convert it again
    // through serde (and lose exact numbers).
    let mut ctx = jmespath::Context::new(expression, &jmespath::DEFAULT_RUNTIME);
    let result = jmespath::interpret(context.converted()?, compiled.as_ast(), &mut ctx)
        .map_err(|e| in_our_words(&e))?;
    Ok(json(&result))
}

/// What went wrong, in one line of our words: JMESPath's own message spans lines, with
/// the expression and a caret under the position.
fn in_our_words(e: &jmespath::JmespathError) -> String {
    use jmespath::{ErrorReason, RuntimeError as R};
    let at = e.offset;
    match &e.reason {
        ErrorReason::Parse(why) => format!(
            "it is not valid JMESPath (at character {at}: {})",
            why.trim_end_matches('.')
        ),
        ErrorReason::Runtime(R::InvalidType {
            expected,
            actual,
            position,
        }) => format!(
            "the function at character {at} got {actual} as argument {}, where it takes {expected}",
            position + 1
        ),
        ErrorReason::Runtime(R::InvalidReturnType {
            expected, actual, ..
        }) => format!(
            "the expression passed to the function at character {at} gave {actual}, where {expected} is needed"
        ),
        ErrorReason::Runtime(R::TooManyArguments { expected, actual })
        | ErrorReason::Runtime(R::NotEnoughArguments { expected, actual }) => {
            format!("the function at character {at} takes {expected} argument(s), not {actual}")
        }
        ErrorReason::Runtime(R::UnknownFunction(name)) => {
            format!("JMESPath has no function `{name}`")
        }
        ErrorReason::Runtime(R::InvalidSlice) => {
            format!("the slice at character {at} has a step of 0")
        }
    }
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
        let value = json!({"headers": {"x-github-event": "pull_request"}, "body": {"action": "opened", "pull_request": {"number": 42}}, "query": {}});
        let ctx = Context::new(&value);
        assert!(ctx.converted.get().is_none(), "converted only when needed");
        assert!(truthy(&eval("body.action == 'opened'", &ctx).unwrap()));
        assert!(!truthy(&eval("body.action == 'closed'", &ctx).unwrap()));
        assert_eq!(eval("body.pull_request.number", &ctx).unwrap(), json!(42));
        // Numbers keep their exact text through an expression.
        let exact: Value =
            serde_json::from_str(r#"{"body": {"amount": 12345678901234567.89}}"#).unwrap();
        let amount = eval("body.amount", &Context::new(&exact)).unwrap();
        assert_eq!(amount.to_string(), "12345678901234567.89");
        assert_eq!(
            eval("headers.\"x-github-event\"", &ctx).unwrap(),
            json!("pull_request")
        );
        assert_eq!(eval("body.missing", &ctx).unwrap(), Value::Null);
        assert!(check("body.[").is_err());
        // Compiled once and kept: a second evaluation finds it; a bad one is not kept.
        assert_eq!(eval("body.pull_request.number", &ctx).unwrap(), json!(42));
        assert!(COMPILED.with(|c| c.borrow().contains_key("body.pull_request.number")));
        assert!(eval("body.[", &ctx).is_err());
        assert!(!COMPILED.with(|c| c.borrow().contains_key("body.[")));
    }

    #[test]
    fn calls_to_functions_jmespath_lacks_are_refused_wherever_they_are() {
        assert!(check("join('-', [body.a, to_string(body.b)])").is_ok());
        assert!(check("sort_by(body.items, &to_number(price))[0]").is_ok());
        for bad in [
            "split(body.text, ' ')",
            "body.items[?lower(name) == 'x']",
            "{a: body.a, b: upper(body.b)}",
            "join('-', [body.a, trim(body.b)])",
            "!ltrim(body.a)",
        ] {
            let err = check(bad).unwrap_err();
            assert!(err.contains("has no function"), "{bad}: {err}");
        }
    }
}
