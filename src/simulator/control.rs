//! The control API under `/__sim/`: the call log, faults, counters, stepping jobs,
//! the clock, and scenario changes at run time.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::common::{Sim, or_error};
use super::engine::{self, job_dto};
use super::scenario::{Release, Scenario};
use super::state::Faults;

/// Filters for the call log.
#[derive(Debug, Deserialize)]
pub struct CallFilter {
    /// Only paths containing this.
    pub path_contains: Option<String>,
    /// Only this method.
    pub method: Option<String>,
}

/// `GET /__sim/calls`.
pub async fn calls(sim: web::Data<Sim>, filter: web::Query<CallFilter>) -> HttpResponse {
    let state = sim.lock();
    let calls: Vec<_> = state
        .calls
        .iter()
        .filter(|c| {
            filter
                .path_contains
                .as_ref()
                .is_none_or(|p| c.path.contains(p.as_str()))
        })
        .filter(|c| {
            filter
                .method
                .as_ref()
                .is_none_or(|m| c.method.eq_ignore_ascii_case(m))
        })
        .collect();
    HttpResponse::Ok().json(calls)
}

/// `DELETE /__sim/calls`.
pub async fn clear_calls(sim: web::Data<Sim>) -> HttpResponse {
    sim.lock().calls.clear();
    HttpResponse::NoContent().finish()
}

/// `GET /__sim/faults`.
pub async fn get_faults(sim: web::Data<Sim>) -> HttpResponse {
    HttpResponse::Ok().json(&sim.lock().faults)
}

/// `PUT /__sim/faults`: replaces the faults.
pub async fn put_faults(sim: web::Data<Sim>, faults: web::Json<Faults>) -> HttpResponse {
    sim.lock().faults = faults.into_inner();
    HttpResponse::NoContent().finish()
}

/// `DELETE /__sim/faults`: no more faults.
pub async fn clear_faults(sim: web::Data<Sim>) -> HttpResponse {
    sim.lock().faults = Faults::default();
    HttpResponse::NoContent().finish()
}

/// `GET /__sim/counters`.
pub async fn counters(sim: web::Data<Sim>) -> HttpResponse {
    HttpResponse::Ok().json(&sim.lock().counters)
}

/// `GET /__sim/jobs`: every job in every folder.
pub async fn jobs(sim: web::Data<Sim>) -> HttpResponse {
    let state = sim.lock();
    let jobs: Vec<_> = state.jobs.values().map(|j| job_dto(j, None)).collect();
    HttpResponse::Ok().json(jobs)
}

/// `GET /__sim/queue-items`: every queue item, as `QueueItemDto`s.
pub async fn queue_items(sim: web::Data<Sim>) -> HttpResponse {
    let state = sim.lock();
    let items: Vec<_> = state
        .queue_items
        .values()
        .map(|i| super::queues::item_dto(i, &state))
        .collect();
    HttpResponse::Ok().json(items)
}

/// `POST /__sim/jobs/{id}/advance`: moves a job to its next state now.
pub async fn advance_job(sim: web::Data<Sim>, path: web::Path<i64>) -> HttpResponse {
    let event = engine::step(&mut sim.lock(), path.into_inner());
    match event {
        Some(event) => {
            let dto = job_dto(&event.job, None);
            engine::deliver(&sim.clone().into_inner(), vec![event]);
            HttpResponse::Ok().json(dto)
        }
        None => or_error(409, 0, "The job does not exist or has already ended."),
    }
}

/// Body of `POST /__sim/clock/advance`.
#[derive(Debug, Deserialize)]
pub struct Advance {
    /// Seconds to move the clock forward.
    pub seconds: i64,
}

/// `POST /__sim/clock/advance`: token expiry and job timers see the new time.
pub async fn advance_clock(sim: web::Data<Sim>, body: web::Json<Advance>) -> HttpResponse {
    let mut state = sim.lock();
    state.clock_offset += chrono::Duration::seconds(body.seconds);
    HttpResponse::Ok().json(json!({ "now": state.now() }))
}

/// `POST /__sim/tokens/expire`: every access token issued so far stops working.
pub async fn expire_tokens(sim: web::Data<Sim>) -> HttpResponse {
    let mut state = sim.lock();
    let past = state.now() - chrono::Duration::seconds(1);
    for t in state.tokens.values_mut() {
        t.expires_at = past;
    }
    HttpResponse::NoContent().finish()
}

/// `GET /__sim/scenario`.
pub async fn get_scenario(sim: web::Data<Sim>) -> HttpResponse {
    HttpResponse::Ok().json(&sim.lock().scenario)
}

/// `PUT /__sim/scenario`: replaces the scenario; jobs, tokens and webhooks stay.
pub async fn put_scenario(sim: web::Data<Sim>, scenario: web::Json<Scenario>) -> HttpResponse {
    sim.lock().scenario = scenario.into_inner();
    HttpResponse::NoContent().finish()
}

/// `PUT /__sim/releases`: adds a release, or replaces the one with the same Id
/// (a redeploy that changes the Key).
pub async fn put_release(sim: web::Data<Sim>, release: web::Json<Release>) -> HttpResponse {
    let release = release.into_inner();
    let mut state = sim.lock();
    state.scenario.releases.retain(|r| r.id != release.id);
    state.scenario.releases.push(release);
    HttpResponse::NoContent().finish()
}

/// Registers the control routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/__sim")
            .route("/calls", web::get().to(calls))
            .route("/calls", web::delete().to(clear_calls))
            .route("/faults", web::get().to(get_faults))
            .route("/faults", web::put().to(put_faults))
            .route("/faults", web::delete().to(clear_faults))
            .route("/counters", web::get().to(counters))
            .route("/jobs", web::get().to(jobs))
            .route("/jobs/{id}/advance", web::post().to(advance_job))
            .route("/queue-items", web::get().to(queue_items))
            .route("/clock/advance", web::post().to(advance_clock))
            .route("/tokens/expire", web::post().to(expire_tokens))
            .route("/scenario", web::get().to(get_scenario))
            .route("/scenario", web::put().to(put_scenario))
            .route("/releases", web::put().to(put_release)),
    );
}
