//! The committed spec must equal what the code generates. To regenerate:
//! `cargo run -- openapi > openapi/openapi.json`.

use crate::helpers::spawn_app;

#[test]
fn committed_spec_matches_the_code() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .expect("openapi/openapi.json exists");
    let generated = uipath_gateway::openapi::spec_json();
    assert!(
        committed == generated,
        "openapi/openapi.json is out of date: run `cargo run -- openapi > openapi/openapi.json` and commit it"
    );
}

#[tokio::test]
async fn served_spec_is_the_generated_one() {
    // With no process configured, the served document is the static one but for the
    // (empty) list of process names.
    let app = spawn_app().await;
    let mut served: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let generated: serde_json::Value =
        serde_json::from_str(&uipath_gateway::openapi::spec_json()).unwrap();
    let process = &mut served["paths"]["/run/{process}"]["post"]["parameters"][0];
    assert_eq!(process["schema"]["enum"], serde_json::json!([]));
    process["schema"] =
        generated["paths"]["/run/{process}"]["post"]["parameters"][0]["schema"].clone();
    assert_eq!(served, generated);
}

#[tokio::test]
async fn swagger_ui_is_served_without_a_download() {
    let app = spawn_app().await;
    let res = app.get("/docs").await;
    assert_eq!(res.status(), 308);
    assert_eq!(res.headers()["location"], "/docs/");
    let res = app.get("/docs/").await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("swagger-ui"));
    let res = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(res.status(), 200);
}

#[test]
fn every_operation_documents_its_errors_as_problems() {
    let spec = serde_json::to_value(uipath_gateway::openapi::spec()).unwrap();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, res) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        res["content"].get("application/problem+json").is_some(),
                        "{method} {path} {status} is not documented as problem+json"
                    );
                }
            }
        }
    }
}
