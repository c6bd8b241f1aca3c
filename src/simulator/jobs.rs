//! StartJobs, job lists and reads, StopJobs and StopJob.

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Value, json};

use super::common::{Sim, authorize, folder, json_body, or_error, path_id, tenant};
use super::engine::{self, Event, is_terminal, job_dto};
use super::odata::{page_response, query, release_dto, try_res};
use super::state::Job;

const MAX_INPUT_ARGUMENTS: usize = 10_000;

/// `POST /odata/Jobs/UiPath.Server.Configuration.OData.StartJobs`.
pub async fn start_jobs(req: HttpRequest, body: Bytes, sim: web::Data<Sim>) -> HttpResponse {
    let (res, events) = {
        let mut state = sim.lock();
        let t = try_res!(tenant(&state, &req));
        try_res!(authorize(&state, &req, &t, "OR.Jobs", true));
        let f = try_res!(folder(&state, &req));
        let fields = try_res!(json_body(&body));
        let Some(Value::Object(info)) = fields.get("startinfo") else {
            return or_error(400, 1000, "startInfo is required.");
        };
        let info: std::collections::BTreeMap<String, Value> = info
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        let text = |k: &str| info.get(k).and_then(Value::as_str).map(str::to_string);
        let release = match (text("releasekey"), text("releasename")) {
            (Some(key), _) => state
                .scenario
                .releases
                .iter()
                .find(|r| r.folder_id == f.id && r.key.eq_ignore_ascii_case(&key)),
            (None, Some(name)) => state
                .scenario
                .releases
                .iter()
                .find(|r| r.folder_id == f.id && r.name == name),
            (None, None) => return or_error(400, 1000, "startInfo.ReleaseKey is required."),
        };
        let Some(release) = release.cloned() else {
            return or_error(
                404,
                1002,
                "The release does not exist or the user does not have access to it.",
            );
        };
        let input = match info.get("inputarguments") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                if s.chars().count() > MAX_INPUT_ARGUMENTS {
                    return or_error(
                        400,
                        1000,
                        "InputArguments exceeds the maximum length of 10000 characters.",
                    );
                }
                if !matches!(serde_json::from_str::<Value>(s), Ok(Value::Object(_))) {
                    return or_error(
                        400,
                        1000,
                        "InputArguments must be a JSON object serialized as a string.",
                    );
                }
                Some(s.clone())
            }
            Some(_) => {
                return or_error(
                    400,
                    1000,
                    "startInfo.InputArguments must be a string holding JSON, not an object.",
                );
            }
        };
        let strategy = text("strategy").unwrap_or_else(|| "ModernJobsCount".into());
        if !matches!(strategy.as_str(), "ModernJobsCount" | "JobsCount") {
            return or_error(
                400,
                1000,
                "Invalid Robot ID: the strategy is not valid in a modern folder; use ModernJobsCount.",
            );
        }
        let count = info.get("jobscount").and_then(Value::as_i64).unwrap_or(1);
        if !(1..=100).contains(&count) {
            return or_error(400, 1000, "JobsCount must be between 1 and 100.");
        }
        let reference = text("reference");
        if reference.as_ref().is_some_and(|r| r.chars().count() > 128) {
            return or_error(
                400,
                1000,
                "Reference exceeds the maximum length of 128 characters.",
            );
        }
        let now = state.now();
        let pending = state.scenario.behaviour(&release.process_key).pending_ms as i64;
        let manual = state.scenario.manual_jobs;
        let batch = uuid::Uuid::new_v4().to_string();
        let mut created = Vec::new();
        for _ in 0..count {
            let id = state.next_job_id;
            state.next_job_id += 1;
            let job = Job {
                id,
                key: uuid::Uuid::new_v4().to_string(),
                state: "Pending".into(),
                release_id: release.id,
                release_name: release.name.clone(),
                process_key: release.process_key.clone(),
                folder_id: f.id,
                folder_path: f.fully_qualified_name.clone(),
                reference: reference.clone(),
                input_arguments: input.clone(),
                output_arguments: None,
                info: None,
                job_priority: text("jobpriority").unwrap_or_else(|| "Normal".into()),
                runtime_type: text("runtimetype").unwrap_or_else(|| "Unattended".into()),
                batch_execution_key: batch.clone(),
                creation_time: now,
                start_time: None,
                end_time: None,
                last_modification_time: None,
                next_transition: (!manual).then(|| now + chrono::Duration::milliseconds(pending)),
            };
            state.jobs.insert(id, job.clone());
            state.schedule(id);
            created.push(job);
        }
        state.counters.jobs_started += created.len() as u64;
        let events: Vec<Event> = created
            .iter()
            .map(|j| Event {
                kind: "job.created",
                job: j.clone(),
            })
            .collect();
        let res = if state.faults.start_then_502 > 0 {
            // The job exists, but the caller hears a gateway error (orchestrator-api.md §8).
            state.faults.start_then_502 -= 1;
            HttpResponse::BadGateway()
                .content_type("text/html")
                .body("<html><body>502 Bad Gateway</body></html>")
        } else {
            let info = req.connection_info();
            HttpResponse::Created().json(json!({
                "@odata.context": format!("{}://{}{}/odata/$metadata#Jobs", info.scheme(), info.host(), t.prefix()),
                "value": created.iter().map(|j| job_dto(j, None)).collect::<Vec<_>>(),
            }))
        };
        (res, events)
    };
    engine::deliver(&sim.clone().into_inner(), events);
    res
}

/// `GET /odata/Jobs`: filtered lists count against the per-tenant rate limit.
pub async fn list_jobs(req: HttpRequest, sim: web::Data<Sim>) -> HttpResponse {
    let mut state = sim.lock();
    let t = try_res!(tenant(&state, &req));
    try_res!(authorize(&state, &req, &t, "OR.Jobs", false));
    let f = try_res!(folder(&state, &req));
    let q = try_res!(query(&req));
    if q.filter.is_some()
        && let Some(wait) = state.take_filter_budget(&t.key())
    {
        let mut res = or_error(
            429,
            0,
            "Too many requests: the filtered job list is limited per tenant per minute.",
        );
        res.headers_mut()
            .insert(actix_web::http::header::RETRY_AFTER, wait.into());
        return res;
    }
    let expand = q.expand.iter().any(|e| e.eq_ignore_ascii_case("Release"));
    let omit = state.scenario.list_omits_arguments;
    // A filter that pins the Ids (the gateway's `Id eq 1 or Id eq 2 ...`) looks those
    // jobs up; one that pins References (`Reference eq '...'`) builds only the jobs that
    // carry them; anything else is evaluated over every job of the folder.
    let ids = q.filter.as_ref().and_then(|f| f.ids());
    let refs = q.filter.as_ref().and_then(|f| f.references());
    let pinned: Box<dyn Iterator<Item = &Job>> = match (ids, refs) {
        (Some(ids), _) => Box::new(ids.into_iter().filter_map(|id| state.jobs.get(&id))),
        (None, Some(refs)) => Box::new(
            state
                .jobs
                .values()
                .filter(move |j| j.reference.as_ref().is_some_and(|r| refs.contains(r))),
        ),
        (None, None) => Box::new(state.jobs.values()),
    };
    let items = pinned
        .filter(|j| j.folder_id == f.id)
        .map(|j| {
            let release = state
                .scenario
                .releases
                .iter()
                .find(|r| r.id == j.release_id)
                .map(|r| release_dto(r, &state));
            let mut dto = job_dto(j, None);
            // Filters on Release/... (and the ProcessKey shorthand) work whether or not
            // Release is expanded; both are removed from the page below.
            dto["Release"] = release.clone().unwrap_or(Value::Null);
            dto["ProcessKey"] = json!(j.process_key);
            if omit {
                dto["InputArguments"] = Value::Null;
                dto["OutputArguments"] = Value::Null;
            }
            dto
        })
        .collect();
    let (mut page, count) = q.apply(items);
    for item in &mut page {
        if let Some(o) = item.as_object_mut() {
            o.remove("ProcessKey");
            if !expand {
                o.remove("Release");
            }
        }
    }
    page_response(&req, &t, "Jobs", &q, page, count)
}

/// `GET /odata/Jobs({id})`.
pub async fn get_job(req: HttpRequest, sim: web::Data<Sim>) -> HttpResponse {
    let id = try_res!(path_id(&req));
    let state = sim.lock();
    let t = try_res!(tenant(&state, &req));
    try_res!(authorize(&state, &req, &t, "OR.Jobs", false));
    let f = try_res!(folder(&state, &req));
    match state.jobs.get(&id).filter(|j| j.folder_id == f.id) {
        Some(job) => {
            let info = req.connection_info();
            let mut dto = job_dto(job, None);
            dto["@odata.context"] = json!(format!(
                "{}://{}{}/odata/$metadata#Jobs/$entity",
                info.scheme(),
                info.host(),
                t.prefix()
            ));
            HttpResponse::Ok().json(dto)
        }
        None => or_error(404, 1002, "Job does not exist."),
    }
}

fn stop(
    sim: &web::Data<Sim>,
    req: &HttpRequest,
    ids: Vec<i64>,
    strategy: Option<String>,
) -> HttpResponse {
    let events = {
        let mut state = sim.lock();
        let t = try_res!(tenant(&state, req));
        try_res!(authorize(&state, req, &t, "OR.Jobs", true));
        let f = try_res!(folder(&state, req));
        let next = match strategy.as_deref() {
            Some("SoftStop") => "Stopping",
            Some("Kill") => "Terminating",
            _ => return or_error(400, 1000, "strategy must be SoftStop or Kill."),
        };
        if ids
            .iter()
            .any(|id| state.jobs.get(id).is_none_or(|j| j.folder_id != f.id))
        {
            return or_error(404, 1002, "Job does not exist.");
        }
        let now = state.now();
        let manual = state.scenario.manual_jobs;
        let mut events = Vec::new();
        for id in ids {
            let job = state.jobs.get_mut(&id).expect("checked above");
            if is_terminal(&job.state) {
                continue;
            }
            job.state = next.into();
            job.last_modification_time = Some(now);
            job.next_transition = (!manual).then(|| now + chrono::Duration::milliseconds(100));
            let kind = if next == "Stopping" {
                "job.stopping"
            } else {
                "job.terminating"
            };
            events.push(Event {
                kind,
                job: job.clone(),
            });
            state.schedule(id);
        }
        events
    };
    engine::deliver(&sim.clone().into_inner(), events);
    HttpResponse::Ok().finish()
}

/// `POST /odata/Jobs/UiPath.Server.Configuration.OData.StopJobs`.
pub async fn stop_jobs(req: HttpRequest, body: Bytes, sim: web::Data<Sim>) -> HttpResponse {
    let fields = try_res!(json_body(&body));
    let Some(ids) = fields.get("jobids").and_then(Value::as_array) else {
        return or_error(400, 1000, "jobIds is required.");
    };
    let ids: Vec<i64> = ids.iter().filter_map(Value::as_i64).collect();
    let strategy = fields
        .get("strategy")
        .and_then(Value::as_str)
        .map(str::to_string);
    stop(&sim, &req, ids, strategy)
}

/// `POST /odata/Jobs({id})/UiPath.Server.Configuration.OData.StopJob`.
pub async fn stop_job(req: HttpRequest, body: Bytes, sim: web::Data<Sim>) -> HttpResponse {
    let id = try_res!(path_id(&req));
    let fields = try_res!(json_body(&body));
    let strategy = fields
        .get("strategy")
        .and_then(Value::as_str)
        .map(str::to_string);
    stop(&sim, &req, vec![id], strategy)
}
