//! `/processes`: the mappings from `/run/{name}` to a connection, folder and release.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::setup::{create, input};
use crate::helpers::sim::spawn_sim;
use crate::helpers::spawn_app;

#[tokio::test]
async fn processes_are_created_read_replaced_and_deleted() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_app().await;
    create(&app, &input(&sim, "client_credentials", "sim")).await;
    let body = json!({"name": "Invoices", "connection": "sim", "folder": "Finance/AP", "release": {"process_key": "InvoiceBot"},
        "default_input": {"in_Urgent": false}, "job_options": {"priority": "High", "runtime_type": "Unattended", "robot_ids": [4778]}, "max_wait_seconds": 30});
    let res = app
        .admin(Method::POST, "/processes")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["location"], "/processes/Invoices");
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["connection"], "sim");
    assert_eq!(created["folder"], "Finance/AP");
    assert_eq!(created["default_input"]["in_Urgent"], false);
    assert_eq!(created["job_options"]["robot_ids"], json!([4778]));

    assert_eq!(
        app.admin(Method::POST, "/processes")
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        409
    );

    let mut renamed = body.clone();
    renamed["name"] = "Invoices-v2".into();
    renamed["folder"] = "3".into();
    let res = app
        .admin(Method::PUT, "/processes/Invoices")
        .json(&renamed)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let list = app.admin_get("/processes").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["name"], "Invoices-v2");
    assert_eq!(list["items"][0]["folder"], "3");

    let conn_id = app
        .admin(Method::GET, "/connections")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let res = app
        .admin(Method::DELETE, &format!("/connections/{conn_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409, "a connection in use cannot be deleted");

    assert_eq!(
        app.admin(Method::DELETE, "/processes/Invoices-v2")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        app.admin(Method::GET, "/processes/Invoices-v2")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        app.admin(Method::DELETE, &format!("/connections/{conn_id}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
}

#[tokio::test]
async fn invalid_processes_name_each_problem() {
    let app = spawn_app().await;
    let res = app
        .admin(Method::POST, "/processes")
        .json(&json!({"name": "bad/name", "folder": "Finance/", "release": {}, "max_wait_seconds": 99999, "job_options": {"priority": "Urgent"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.unwrap();
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "name",
            "connection",
            "folder",
            "release",
            "max_wait_seconds",
            "job_options.priority"
        ]
    );

    let body = json!({"name": "X", "connection": "nope", "folder": "Shared", "release": {"name": "OrderSync"}});
    let res = app
        .admin(Method::POST, "/processes")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("no connection named `nope`")
    );
}
