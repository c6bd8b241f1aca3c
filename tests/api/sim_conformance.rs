//! The simulator's bodies, and the requests our tests send it, validate against
//! UiPath's own OpenAPI document (`../shared/orchestrator-openapi/`).

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::sim::{Sim, spawn_sim};
use crate::helpers::spec::Schemas;

async fn body(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status(), status);
    res.json().await.unwrap()
}

async fn start(sim: &Sim, token: &str, schemas: &Schemas) -> i64 {
    let request = json!({"startInfo": {
        "ReleaseKey": crate::helpers::sim::INVOICE_KEY,
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
        Some(crate::helpers::sim::INVOICE_KEY),
    );
    schemas.check("JobsCreatedEventDto", &created);
    let started = sim.sim.with_state(|s| step(s, id)).unwrap();
    schemas.check(
        "JobStartedEventDto",
        &event_payload(&started, 1, Some(crate::helpers::sim::INVOICE_KEY)),
    );
    let completed = sim.sim.with_state(|s| step(s, id)).unwrap();
    schemas.check(
        "JobCompletedEventDto",
        &event_payload(&completed, 1, Some(crate::helpers::sim::INVOICE_KEY)),
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
