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
    // With no process or queue mapping configured, the served document is the static one
    // but for the (empty) lists of their names.
    let app = spawn_app().await;
    let mut served: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let generated: serde_json::Value =
        serde_json::from_str(&uipath_gateway::openapi::spec_json()).unwrap();
    // The same for queue mappings on `POST /queues/{queue}`.
    for (path, name) in [("/run/{process}", "process"), ("/queues/{queue}", "queue")] {
        let at = served["paths"][path]["post"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .position(|p| p["name"] == name)
            .unwrap();
        let param = &mut served["paths"][path]["post"]["parameters"][at];
        assert_eq!(param["schema"]["enum"], serde_json::json!([]), "{path}");
        param["schema"] = generated["paths"][path]["post"]["parameters"][at]["schema"].clone();
    }
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
