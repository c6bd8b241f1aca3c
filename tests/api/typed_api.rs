//! Each process is its own typed operation in the served document, the schema it
//! publishes is the one `/run` checks, and a process or webhook is checked against
//! Orchestrator when it is saved.

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::helpers::TestApp;
use crate::helpers::db;
use crate::helpers::setup::{api_key, process, setup_on};
use crate::helpers::sim::{Sim, spawn_sim};

async fn app() -> (TestApp, Sim, String) {
    let sim = spawn_sim(|_| {}).await;
    let (_, url) = db::server().fresh_database().await;
    let (app, key) = setup_on(&sim, url, |s| s.rate_limits.api_key_per_second = 0).await;
    (app, sim, key)
}

async fn document(app: &TestApp) -> Value {
    let res = app.get("/openapi.json").await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn post_run(app: &TestApp, key: &str, name: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/run/{name}")))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The fields a 422 names.
async fn named(res: reqwest::Response) -> Vec<String> {
    assert_eq!(res.status(), 422);
    let p: Value = res.json().await.unwrap();
    p["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors in {p}"))
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect()
}

/// A value the schema refuses, by its (non-null) type; None for a schema that takes
/// anything.
fn violating(schema: &Value) -> Option<Value> {
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    Some(match types.into_iter().find(|t| *t != "null")? {
        "string" if schema["format"] == "date-time" => json!("not a date"),
        "string" => json!(12345),
        "integer" => json!(1.5),
        "number" => json!("twelve"),
        "boolean" => json!("yes"),
        "array" => json!("not an array"),
        "object" => json!([1]),
        _ => return None,
    })
}

async fn jobs(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from jobs")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn each_published_example_runs_and_each_violation_is_refused_naming_the_argument() {
    let (app, _sim, key) = app().await;
    process(
        &app,
        json!({"name": "Orders", "connection": "sim", "folder": "Shared",
            "release": {"name": "OrderSync"}}),
    )
    .await;
    let doc = document(&app).await;
    let generic = &doc["paths"]["/run/{process}"]["post"]["parameters"][0]["schema"]["enum"];
    assert_eq!(generic, &json!(["Invoices", "Orders"]));
    let mut checked = 0;
    for name in ["Invoices", "Orders"] {
        let op = &doc["paths"][format!("/run/{name}")]["post"];
        assert_eq!(op["operationId"], format!("run_{name}"));
        let body = &op["requestBody"]["content"]["application/json"];
        let schema = &body["schema"];
        let example = &body["example"];
        assert_eq!(schema["additionalProperties"], false, "{schema}");
        let res = post_run(&app, &key, name, example).await;
        assert_eq!(res.status(), 202, "{name}: {}", res.text().await.unwrap());

        let before = jobs(&app).await;
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        for (arg, arg_schema) in schema["properties"].as_object().unwrap() {
            if let Some(bad) = violating(arg_schema) {
                let mut body = example.as_object().unwrap().clone();
                body.insert(arg.clone(), bad.clone());
                let fields = named(post_run(&app, &key, name, &Value::Object(body)).await).await;
                assert_eq!(fields, [arg.as_str()], "{name}.{arg} = {bad}");
                checked += 1;
            }
            if required.contains(&arg.as_str()) {
                for body in [
                    {
                        let mut b = example.as_object().unwrap().clone();
                        b.remove(arg);
                        b
                    },
                    {
                        let mut b = example.as_object().unwrap().clone();
                        b.insert(arg.clone(), Value::Null);
                        b
                    },
                ] {
                    let fields =
                        named(post_run(&app, &key, name, &Value::Object(body)).await).await;
                    assert_eq!(fields, [arg.as_str()], "{name}: {arg} missing or null");
                    checked += 1;
                }
            }
        }
        let mut extra = example.as_object().unwrap().clone();
        extra.insert("in_Unknown".into(), json!(1));
        let fields = named(post_run(&app, &key, name, &Value::Object(extra)).await).await;
        assert_eq!(fields, ["in_Unknown"]);
        // Nothing refused was recorded.
        assert_eq!(jobs(&app).await, before);
    }
    assert!(checked >= 8, "only {checked} violations were tried");
}

#[tokio::test]
async fn the_document_follows_processes_and_redeploys_without_a_restart() {
    let (app, sim, key) = app().await;
    assert!(document(&app).await["paths"]["/run/Orders"].is_null());
    process(
        &app,
        json!({"name": "Orders", "connection": "sim", "folder": "Shared",
            "release": {"name": "OrderSync"}}),
    )
    .await;
    let doc = document(&app).await;
    let orders = &doc["paths"]["/run/Orders"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    assert_eq!(orders["required"], json!(["in_OrderIds"]));
    assert_eq!(
        orders["properties"]["in_OrderIds"]["items"]["type"],
        "integer"
    );

    // A default in the process makes the argument optional, with the default shown.
    let res = app
        .admin(Method::PUT, "/processes/Orders")
        .json(
            &json!({"name": "Orders", "connection": "sim", "folder": "Shared",
            "release": {"name": "OrderSync"}, "default_input": {"in_OrderIds": [1, 2]}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let doc = document(&app).await;
    let orders = &doc["paths"]["/run/Orders"]["post"]["requestBody"]["content"]["application/json"];
    assert_eq!(orders["schema"]["required"], json!([]));
    assert_eq!(
        orders["schema"]["properties"]["in_OrderIds"]["default"],
        json!([1, 2])
    );
    assert_eq!(orders["example"]["in_OrderIds"], json!([1, 2]));

    // A redeploy with a new key and a new argument: the next run looks the release up
    // again, and the document shows the new argument.
    let mut release = sim.release("InvoiceBot");
    release.key = "11111111-2222-3333-4444-555555555555".into();
    let mut released = serde_json::to_value(&release).unwrap();
    released["input_arguments"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "in_Note", "type": "System.String", "required": false}));
    sim.control(Method::PUT, "/releases", Some(released)).await;
    let res = post_run(
        &app,
        &key,
        "Invoices",
        &json!({"in_Vendor": "A", "in_Amount": 1}),
    )
    .await;
    assert_eq!(res.status(), 202);
    let doc = document(&app).await;
    let invoices = &doc["paths"]["/run/Invoices"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    assert_eq!(
        invoices["properties"]["in_Note"]["type"],
        json!(["string", "null"])
    );

    // A deleted process leaves the document (the change notification says so, also to
    // the copy of the document the server keeps).
    let res = app
        .admin(Method::DELETE, "/processes/Orders")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    crate::helpers::setup::eventually(
        "the deleted process leaves the document",
        std::time::Duration::from_secs(10),
        || async { document(&app).await["paths"]["/run/Orders"].is_null() },
    )
    .await;
}

async fn create(app: &TestApp, body: Value) -> (u16, Value) {
    let res = app
        .admin(Method::POST, "/processes")
        .json(&body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

fn invoices(name: &str) -> Value {
    json!({"name": name, "connection": "sim", "folder": "Finance/AP",
        "release": {"process_key": "InvoiceBot"}})
}

#[tokio::test]
async fn a_process_naming_what_orchestrator_lacks_is_refused_with_what_exists() {
    let (app, _sim, _) = app().await;
    let cases = [
        ("folder", json!("Finance/APX"), "folder", "Finance/AP"),
        (
            "release",
            json!({"process_key": "InvoiceBott"}),
            "release.process_key",
            "InvoiceBot",
        ),
        (
            "release",
            json!({"name": "Invoice Bot"}),
            "release.name",
            "InvoiceBot",
        ),
        (
            "release",
            json!({"process_key": "InvoiceBot", "version": "9.9.9"}),
            "release.version",
            "1.0.3",
        ),
        (
            "default_input",
            json!({"in_Vendr": "x"}),
            "default_input.in_Vendr",
            "in_Vendor",
        ),
        (
            "default_input",
            json!({"in_Amount": "many"}),
            "default_input.in_Amount",
            "System.Decimal",
        ),
    ];
    for (field, value, named, listed) in cases {
        let mut body = invoices("Checked");
        body[field] = value;
        let (status, p) = create(&app, body).await;
        assert_eq!(status, 422, "{field}: {p}");
        assert_eq!(p["code"], "validation_failed");
        assert_eq!(p["errors"][0]["field"], named, "{p}");
        assert!(p["detail"].as_str().unwrap().contains(listed), "{p}");
    }
    // Nothing was stored, and a good one is verified.
    assert!(app.admin_get("/processes/Checked").await["name"].is_null());
    let (status, p) = create(&app, invoices("Checked")).await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(p["unverified"], false);
    assert_eq!(p["warnings"], json!([]));
    assert!(p["release_key"].is_string(), "{p}");
}

#[tokio::test]
async fn unreachable_orchestrator_saves_unverified_with_a_warning_until_a_check_succeeds() {
    let (app, sim, _) = app().await;
    sim.control(
        Method::PUT,
        "/faults",
        Some(json!({"errors": [{"status": 503, "path_contains": "Releases"}]})),
    )
    .await;
    let (status, p) = create(&app, invoices("Later")).await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(p["unverified"], true);
    let warning = p["warnings"][0].as_str().unwrap();
    assert!(warning.contains("could not be asked"), "{warning}");
    assert_eq!(app.admin_get("/processes/Later").await["unverified"], true);
    // Its operation is listed, untyped, saying why.
    let doc = document(&app).await;
    let op = &doc["paths"]["/run/Later"]["post"];
    assert!(
        op["description"]
            .as_str()
            .unwrap()
            .contains("not been looked up"),
        "{op}"
    );

    // A webhook for it is accepted too, with a warning: its mapping could not be checked.
    let res = app
        .admin(Method::POST, "/webhooks")
        .json(
            &json!({"slug": "later", "process": "Later", "scheme": "token",
            "config": {"header": "x-token"}, "secrets": ["t0ken-for-later"],
            "mapping": {"in_Vendr": "body.v"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let hook: Value = res.json().await.unwrap();
    assert!(
        hook["warnings"][0]
            .as_str()
            .unwrap()
            .contains("not checked"),
        "{hook}"
    );

    // Orchestrator is back: the first run looks the release up, and the mark is gone.
    sim.control(Method::DELETE, "/faults", None).await;
    let later = api_key(&app, "later", json!(["run:Later"])).await;
    let res = post_run(
        &app,
        &later,
        "Later",
        &json!({"in_Vendor": "A", "in_Amount": 1}),
    )
    .await;
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    let p = app.admin_get("/processes/Later").await;
    assert_eq!(p["unverified"], false, "{p}");
    assert_eq!(p["warnings"], json!([]));
    let doc = document(&app).await;
    let op = &doc["paths"]["/run/Later"]["post"]["requestBody"]["content"]["application/json"];
    assert_eq!(op["schema"]["required"], json!(["in_Vendor", "in_Amount"]));
}

#[tokio::test]
async fn a_webhook_mapping_may_only_name_arguments_and_must_cover_the_required_ones() {
    let (app, _sim, _) = app().await;
    let hook = |slug: &str, mapping: Value| {
        json!({"slug": slug, "process": "Invoices", "scheme": "token",
            "config": {"header": "x-token"}, "secrets": ["t0ken-for-mapping"], "mapping": mapping})
    };
    let define = |body: Value| app.admin(Method::POST, "/webhooks").json(&body).send();
    let res = define(hook(
        "typo",
        json!({"in_Vendr": "body.v", "in_Amount": "body.a"}),
    ))
    .await
    .unwrap();
    assert_eq!(res.status(), 422);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["errors"][0]["field"], "mapping.in_Vendr", "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("it takes: in_Vendor, in_Amount"),
        "{p}"
    );

    let res = define(hook("short", json!({"in_Vendor": "body.v"})))
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["errors"][0]["field"], "mapping", "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("requires in_Amount"),
        "{p}"
    );

    // A default in the process covers a required argument.
    let res = app
        .admin(Method::PUT, "/processes/Invoices")
        .json(
            &json!({"name": "Invoices", "connection": "sim", "folder": "Finance/AP",
            "release": {"process_key": "InvoiceBot"}, "default_input": {"in_Amount": 1}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = define(hook("short", json!({"in_Vendor": "body.v"})))
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.json::<Value>().await.unwrap()["warnings"], json!([]));
}

/// A 422 whose first problem is `field`, and whose detail says `says`.
async fn refused(res: reqwest::Response, field: &str, says: &str) {
    assert_eq!(res.status(), 422);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["errors"][0]["field"], field, "{p}");
    assert!(p["detail"].as_str().unwrap().contains(says), "{p}");
}

#[tokio::test]
async fn null_and_oversized_arguments_are_refused_by_name() {
    let (app, _sim, key) = app().await;
    let before = jobs(&app).await;
    refused(
        post_run(
            &app,
            &key,
            "Invoices",
            &json!({"in_Vendor": "A", "in_Amount": null}),
        )
        .await,
        "in_Amount",
        "null is not accepted",
    )
    .await;
    // An optional System.Boolean cannot be null either: it is a value type.
    let res = post_run(
        &app,
        &key,
        "Invoices",
        &json!({"in_Vendor": "A", "in_Amount": 1, "in_Urgent": null}),
    )
    .await;
    assert_eq!(res.status(), 422, "System.Boolean cannot be null");

    let mut big = Map::new();
    big.insert("in_Vendor".into(), json!("v".repeat(10_500)));
    big.insert("in_Amount".into(), json!(1));
    refused(
        post_run(&app, &key, "Invoices", &Value::Object(big)).await,
        "in_Vendor",
        "the largest: in_Vendor (10502 characters), in_Amount (1 characters)",
    )
    .await;
    assert_eq!(jobs(&app).await, before);
}
