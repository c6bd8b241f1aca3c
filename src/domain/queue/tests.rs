//! Queue schemas, item options and references.

use super::*;
use serde_json::json;

fn schema() -> QueueSchema {
    QueueSchema {
        id: 1,
        name: "Q".into(),
        unique_references: true,
        content_schema: Some(json!({"type": "object",
            "properties": {"InvoiceNumber": {"type": "string"}, "Amount": {"type": "number"}},
            "required": ["InvoiceNumber", "Amount"]})),
        output_schema: None,
        max_retries: 1,
    }
}

#[test]
fn content_problems_name_the_field_without_the_value() {
    let c = json!({"InvoiceNumber": "secret-42", "Amount": "12"});
    let p = schema().content_problems(c.as_object().unwrap());
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].field, "Amount");
    assert!(!p[0].problem.contains("12"), "{}", p[0].problem);
    let missing = schema().content_problems(json!({"Amount": 1}).as_object().unwrap());
    assert_eq!(missing[0].field, "InvoiceNumber");
    assert!(
        schema()
            .content_problems(
                json!({"InvoiceNumber": "A", "Amount": 1.5})
                    .as_object()
                    .unwrap()
            )
            .is_empty()
    );
}

#[test]
fn the_recorded_input_keeps_content_and_options() {
    let o = ItemOptions {
        priority: Some("High".into()),
        ..Default::default()
    };
    let doc = item_input(json!({"a": 1}).as_object().unwrap().clone(), &o);
    let (content, back) = split_item_input(&Value::Object(doc));
    assert_eq!(content["a"], 1);
    assert_eq!(back, o);
}

#[test]
fn options_and_references_are_checked() {
    let o = ItemOptions {
        priority: Some("Urgent".into()),
        due_date: Some("tomorrow".into()),
        ..Default::default()
    };
    let fields: Vec<_> = o.problems().into_iter().map(|p| p.field).collect();
    assert_eq!(fields, ["priority", "due_date"]);
    assert!(reference_problem(&"x".repeat(129)).is_some());
    assert!(reference_problem("INV-1").is_none());
}
