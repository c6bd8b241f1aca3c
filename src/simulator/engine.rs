//! The job state machine and outgoing webhooks.
//!
//! Pending -> Running -> Successful | Faulted; Stopping | Terminating -> Stopped.
//! In automatic mode a ticker moves jobs when their time is up; in manual mode
//! (`manual_jobs`) only `/__sim/jobs/{id}/advance` moves them.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use super::common::Sim;
use super::scenario::{Outcome, OutputRule};
use super::state::{Job, SimState, random_token, ts};

/// A job event to send to subscribed webhooks.
#[derive(Debug, Clone)]
pub struct Event {
    /// `job.created`, `job.started`, ...
    pub kind: &'static str,
    /// The job after the change.
    pub job: Job,
}

/// True for Successful, Faulted and Stopped.
pub fn is_terminal(state: &str) -> bool {
    matches!(state, "Successful" | "Faulted" | "Stopped")
}

/// The job as JobDto (OutputArguments as a JSON string).
pub fn job_dto(job: &Job, expand_release: Option<&Value>) -> Value {
    let (error_code, job_error) = if job.state == "Faulted" {
        (json!("Robot"), job_error(job))
    } else {
        (Value::Null, Value::Null)
    };
    let mut dto = json!({
        "Key": job.key,
        "StartTime": job.start_time.map(ts),
        "EndTime": job.end_time.map(ts),
        "State": job.state,
        "JobPriority": job.job_priority,
        "SpecificPriorityValue": 45,
        "Source": "Manual",
        "SourceType": "Manual",
        "BatchExecutionKey": job.batch_execution_key,
        "Info": job.info,
        "CreationTime": ts(job.creation_time),
        "StartingScheduleId": null,
        "ReleaseName": job.release_name,
        "Type": "Unattended",
        "InputArguments": job.input_arguments,
        "InputFile": null,
        "OutputArguments": job.output_arguments,
        "OutputFile": null,
        "HostMachineName": if job.start_time.is_some() { json!("SIM-ROBOT-01") } else { Value::Null },
        "HasMediaRecorded": false,
        "HasVideoRecorded": false,
        "PersistenceId": null,
        "ResumeVersion": null,
        "StopStrategy": null,
        "RuntimeType": job.runtime_type,
        "RequiresUserInteraction": false,
        "ReleaseVersionId": job.release_id,
        "EntryPointPath": null,
        "OrganizationUnitId": job.folder_id,
        "OrganizationUnitFullyQualifiedName": job.folder_path,
        "Reference": job.reference.clone().unwrap_or_default(),
        "ProcessType": "Process",
        "ResumeOnSameContext": false,
        "LocalSystemAccount": "",
        "OrchestratorUserIdentity": null,
        "RemoteControlAccess": "None",
        "StartingTriggerId": null,
        "MaxExpectedRunningTimeSeconds": null,
        "ServerlessJobType": null,
        "ParentJobKey": null,
        "ResumeTime": null,
        "LastModificationTime": job.last_modification_time.map(ts),
        "JobError": job_error,
        "ErrorCode": error_code,
        "Id": job.id,
    });
    if let Some(release) = expand_release {
        dto["Release"] = release.clone();
    }
    dto
}

/// Moves a job to its next state. Returns the event, or None if it is terminal.
pub fn step(state: &mut SimState, id: i64) -> Option<Event> {
    let now = state.now();
    let manual = state.scenario.manual_jobs;
    let job = state.jobs.get(&id)?;
    let behaviour = state.scenario.behaviour(&job.process_key).clone();
    let job = state.jobs.get_mut(&id)?;
    let kind = match job.state.as_str() {
        "Pending" => {
            job.state = "Running".into();
            job.start_time = Some(now);
            job.next_transition = (!manual)
                .then(|| now + chrono::Duration::milliseconds(behaviour.running_ms as i64));
            "job.started"
        }
        "Running" => {
            job.end_time = Some(now);
            job.next_transition = None;
            match behaviour.outcome {
                Outcome::Successful => {
                    job.state = "Successful".into();
                    job.info = Some("Job completed".into());
                    let output = match &behaviour.output {
                        OutputRule::Echo => {
                            job.input_arguments.clone().unwrap_or_else(|| "{}".into())
                        }
                        OutputRule::Fixed(v) => v.to_string(),
                    };
                    job.output_arguments = Some(output);
                    "job.completed"
                }
                Outcome::Faulted => {
                    job.state = "Faulted".into();
                    job.info = Some(behaviour.fault_message.clone());
                    "job.faulted"
                }
            }
        }
        "Stopping" | "Terminating" => {
            job.state = "Stopped".into();
            job.end_time = Some(now);
            job.next_transition = None;
            job.info = Some("Job stopped".into());
            "job.stopped"
        }
        _ => return None,
    };
    job.last_modification_time = Some(now);
    let event = Event {
        kind,
        job: job.clone(),
    };
    state.schedule(id);
    Some(event)
}

/// Moves every job whose time has come. Returns the events to send.
pub fn advance_due(state: &mut SimState) -> Vec<Event> {
    if state.scenario.manual_jobs {
        return Vec::new();
    }
    let now = state.now();
    let mut due = Vec::new();
    while let Some(std::cmp::Reverse((at, id))) = state.due.peek().copied() {
        if at > now {
            break;
        }
        state.due.pop();
        due.push((at, id));
    }
    // Checked as each is stepped: a stepped job has a new time, so a second entry for the
    // same time (or one from before a stop) moves nothing.
    let mut events = Vec::new();
    for (at, id) in due {
        if state
            .jobs
            .get(&id)
            .is_some_and(|j| j.next_transition == Some(at))
        {
            events.extend(step(state, id));
        }
    }
    events
}

/// Runs the ticker until the simulator stops.
pub async fn run_ticker(sim: Arc<Sim>) {
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let (events, queue_events) = {
            let mut state = sim.lock();
            (
                advance_due(&mut state),
                super::queue_robot::advance_due(&mut state),
            )
        };
        if !events.is_empty() {
            deliver(&sim, events);
        }
        if !queue_events.is_empty() {
            super::outbox::deliver_payloads(&sim, queue_events);
        }
    }
}

fn job_error(job: &Job) -> Value {
    json!({
        "code": "Robot",
        "title": "Job faulted",
        "detail": job.info,
        "category": "User",
        "status": null,
        "timestamp": job.end_time.map(ts),
    })
}

fn arguments_object(s: Option<&str>) -> Value {
    s.and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_else(|| json!({}))
}

/// A job as `WrappedJobDto` (in `job.created`).
fn wrapped_job(job: &Job, release_key: Option<&str>) -> Value {
    json!({
        "Id": job.id,
        "Key": job.key,
        "CreationTime": ts(job.creation_time),
        "StartTime": job.start_time.map(ts),
        "EndTime": job.end_time.map(ts),
        "State": job.state,
        "Source": "Manual",
        "SourceType": "Manual",
        "BatchExecutionKey": job.batch_execution_key,
        "Info": job.info,
        "ReleaseName": job.release_name,
        "Type": "Unattended",
        "HostMachineName": job.start_time.map(|_| "SIM-ROBOT-01"),
        "Release": {
            "Id": job.release_id,
            "Key": release_key,
            "ProcessKey": job.process_key,
            "Name": job.release_name,
            "IsLatestVersion": true,
        },
        "InputArguments": arguments_object(job.input_arguments.as_deref()),
        "OutputArguments": arguments_object(job.output_arguments.as_deref()),
        "RuntimeType": job.runtime_type,
        "ProcessType": "Process",
        "SpecificPriorityValue": 45,
    })
}

/// A job as `SimpleJobEventDto` (every other job event).
fn simple_job(job: &Job, release_key: Option<&str>) -> Value {
    let faulted = job.state == "Faulted";
    json!({
        "Id": job.id,
        "Key": job.key,
        "Type": "Unattended",
        "State": job.state,
        "StartTime": job.start_time.map(ts),
        "EndTime": job.end_time.map(ts),
        "CreationTime": ts(job.creation_time),
        "Info": job.info,
        "SpecificPriorityValue": 45,
        "ErrorCode": if faulted { json!("Robot") } else { Value::Null },
        "Error": if faulted { job_error(job) } else { Value::Null },
        "RuntimeType": job.runtime_type,
        "SourceType": "Manual",
        // An object here, where JobDto has a string.
        "OutputArguments": arguments_object(job.output_arguments.as_deref()),
        "Robot": job.start_time.map(|_| json!({"Id": 4778, "Name": "sim-robot", "Type": "Unattended", "MachineName": "SIM-ROBOT-01"})),
        "Release": {"Id": job.release_id, "Key": release_key, "ProcessKey": job.process_key, "Name": job.release_name, "ProcessType": "Process"},
        "EntryPointPath": null,
    })
}

/// The body Orchestrator sends for an event (`JobsCreatedEventDto`, `JobStartedEventDto`, ...).
pub fn event_payload(event: &Event, tenant_id: i64, release_key: Option<&str>) -> Value {
    let mut body = json!({
        "Type": event.kind,
        "EventId": random_token("").chars().take(32).collect::<String>(),
        "Timestamp": ts(Utc::now()),
        "TenantId": tenant_id,
        "OrganizationUnitId": event.job.folder_id,
    });
    match event.kind {
        "job.created" => {
            body["StartInfo"] = json!({"ReleaseKey": release_key, "Strategy": "ModernJobsCount", "JobsCount": 1, "Source": "Manual"});
            body["Jobs"] = json!([wrapped_job(&event.job, release_key)]);
        }
        // JobsStoppedEventDto: an array, but of the simple shape.
        "job.stopped" => body["Jobs"] = json!([simple_job(&event.job, release_key)]),
        _ => body["Job"] = simple_job(&event.job, release_key),
    }
    body
}

/// Sends job events to every subscribed webhook, in the background.
pub fn deliver(sim: &Arc<Sim>, events: Vec<Event>) {
    let payloads = {
        let state = sim.lock();
        events
            .iter()
            .map(|event| {
                let release_key = state
                    .scenario
                    .releases
                    .iter()
                    .find(|r| r.id == event.job.release_id)
                    .map(|r| r.key.clone());
                (event.kind, event_payload(event, 1, release_key.as_deref()))
            })
            .collect()
    };
    super::outbox::deliver_payloads(sim, payloads);
}
