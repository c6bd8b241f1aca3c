//! The simulator's bodies, and the requests our tests send it, validate against
//! UiPath's own OpenAPI document (`../shared/orchestrator-openapi/`).

use reqwest::Method;
use serde_json::{Value, json};

use crate::sim_helpers::{Sim, spawn_sim};

const SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/orchestrator-openapi/orchestrator-cloud-v20.0-openapi3.json"
);

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

pub struct Schemas(Value);

impl Schemas {
    pub fn load() -> Self {
        let text = std::fs::read_to_string(SPEC)
            .expect("the shared OpenAPI document is beside the project");
        let spec: Value = serde_json::from_str(&text).unwrap();
        let mut components = spec["components"].clone();
        nullable_to_types(&mut components);
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

async fn body(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status(), status);
    res.json().await.unwrap()
}

async fn start(sim: &Sim, token: &str, schemas: &Schemas) -> i64 {
    let request = json!({"startInfo": {
        "ReleaseKey": crate::sim_helpers::INVOICE_KEY,
        "Strategy": "ModernJobsCount",
        "JobsCount": 1,
        "RuntimeType": "Unattended",
        "InputArguments": "{\"in_Vendor\":\"ACME\",\"in_Amount\":12.5}",
        "Reference": "conformance",
    }});
    schemas.check("StartJobsRequest", &request);
    let url = sim.cloud("/odata/Jobs/UiPath.Server.Configuration.OData.StartJobs");
    let created = body(
        sim.post(
            &url,
            token,
            Some(("X-UIPATH-OrganizationUnitId", "3")),
            &request,
        )
        .await,
        201,
    )
    .await;
    for job in created["value"].as_array().unwrap() {
        schemas.check("JobDto", job);
    }
    created["value"][0]["Id"].as_i64().unwrap()
}

#[tokio::test]
async fn simulator_bodies_validate_against_uipaths_schemas() {
    let schemas = Schemas::load();
    let sim = spawn_sim(|s| s.manual_jobs = true).await;
    let token = sim.token().await;
    let ap = Some(("X-UIPATH-OrganizationUnitId", "3"));

    let folders = body(
        sim.get(&sim.cloud("/odata/Folders"), &token, None).await,
        200,
    )
    .await;
    for f in folders["value"].as_array().unwrap() {
        schemas.check("FolderDto", f);
    }
    let releases = body(
        sim.get(&sim.cloud("/odata/Releases"), &token, ap).await,
        200,
    )
    .await;
    for r in releases["value"].as_array().unwrap() {
        schemas.check("ReleaseDto", r);
    }

    let id = start(&sim, &token, &schemas).await;
    for _ in 0..2 {
        sim.control(Method::POST, &format!("/jobs/{id}/advance"), None)
            .await;
        let one = body(
            sim.get(&sim.cloud(&format!("/odata/Jobs({id})")), &token, ap)
                .await,
            200,
        )
        .await;
        schemas.check("JobDto", &one);
    }
    let list = body(
        sim.get(
            &format!("{}?$expand=Release", sim.cloud("/odata/Jobs")),
            &token,
            ap,
        )
        .await,
        200,
    )
    .await;
    for j in list["value"].as_array().unwrap() {
        schemas.check("JobDto", j);
    }

    let stop = json!({"strategy": "SoftStop", "jobIds": [id]});
    schemas.check("StopJobsRequest", &stop);

    let hook = json!({"Name": "n", "Url": "http://127.0.0.1:9/x", "Enabled": false, "SubscribeToAllEvents": true,
        "AllowInsecureSsl": false, "Events": [{"EventType": "job.completed"}]});
    schemas.check("WebhookDto", &hook);
    let created = body(
        sim.post(&sim.cloud("/odata/Webhooks"), &token, None, &hook)
            .await,
        201,
    )
    .await;
    schemas.check("WebhookDto", &created);

    // Errors: a missing folder.
    let err = body(
        sim.get(&sim.cloud("/odata/Releases"), &token, None).await,
        400,
    )
    .await;
    assert!(err["message"].is_string() && err["errorCode"].is_number());
}

#[tokio::test]
async fn webhook_payloads_validate_against_the_event_schemas() {
    let schemas = Schemas::load();
    let sim = spawn_sim(|s| s.manual_jobs = true).await;
    let token = sim.token().await;
    let id = start(&sim, &token, &schemas).await;
    let job = sim.sim.with_state(|s| s.jobs.get(&id).cloned()).unwrap();
    use uipath_gateway::simulator::engine::{Event, event_payload, step};
    let created = event_payload(
        &Event {
            kind: "job.created",
            job,
        },
        1,
        Some(crate::sim_helpers::INVOICE_KEY),
    );
    schemas.check("JobsCreatedEventDto", &created);
    let started = sim.sim.with_state(|s| step(s, id)).unwrap();
    schemas.check(
        "JobStartedEventDto",
        &event_payload(&started, 1, Some(crate::sim_helpers::INVOICE_KEY)),
    );
    let completed = sim.sim.with_state(|s| step(s, id)).unwrap();
    schemas.check(
        "JobCompletedEventDto",
        &event_payload(&completed, 1, Some(crate::sim_helpers::INVOICE_KEY)),
    );

    let url = sim.cloud("/odata/Jobs/UiPath.Server.Configuration.OData.StartJobs");
    let request = json!({"startInfo": {"ReleaseName": "FailingJob"}});
    let res: Value = sim
        .post(
            &url,
            &token,
            Some(("X-UIPATH-OrganizationUnitId", "1")),
            &request,
        )
        .await
        .json()
        .await
        .unwrap();
    let failing = res["value"][0]["Id"].as_i64().unwrap();
    sim.sim.with_state(|s| step(s, failing)).unwrap();
    let faulted = sim.sim.with_state(|s| step(s, failing)).unwrap();
    schemas.check("JobFaultedEventDto", &event_payload(&faulted, 1, None));

    let other = start(&sim, &token, &schemas).await;
    let url = sim.cloud("/odata/Jobs/UiPath.Server.Configuration.OData.StopJobs");
    let stop = json!({"strategy": "Kill", "jobIds": [other]});
    assert_eq!(
        sim.post(
            &url,
            &token,
            Some(("X-UIPATH-OrganizationUnitId", "3")),
            &stop
        )
        .await
        .status(),
        200
    );
    let stopped = sim.sim.with_state(|s| step(s, other)).unwrap();
    assert_eq!(stopped.kind, "job.stopped");
    schemas.check("JobsStoppedEventDto", &event_payload(&stopped, 1, None));
}
