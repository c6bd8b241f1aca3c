//! Where a job stands. The ledger stores these names in lower case; Orchestrator's own
//! (`Pending`, `Running`, ...) map onto them, with `queued`, `unknown`, `rejected` and
//! `dead` our own for jobs Orchestrator does not (or may not) have.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A job's state in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Recorded, not yet started (or waiting to be started again).
    Queued,
    /// Its start may have reached Orchestrator (a timeout, a 5xx after sending): it waits
    /// for a lookup by its Reference before anything else happens to it.
    Unknown,
    Pending,
    Running,
    Stopping,
    Terminating,
    Suspended,
    Resumed,
    Successful,
    Faulted,
    Stopped,
    /// Orchestrator refused it for good; it never ran.
    Rejected,
    /// Out of attempts; it never ran.
    Dead,
}

impl JobState {
    /// Every state.
    pub const ALL: [JobState; 13] = [
        JobState::Queued,
        JobState::Unknown,
        JobState::Pending,
        JobState::Running,
        JobState::Stopping,
        JobState::Terminating,
        JobState::Suspended,
        JobState::Resumed,
        JobState::Successful,
        JobState::Faulted,
        JobState::Stopped,
        JobState::Rejected,
        JobState::Dead,
    ];

    /// The states a job ends in.
    pub const TERMINAL: [JobState; 5] = [
        JobState::Successful,
        JobState::Faulted,
        JobState::Stopped,
        JobState::Rejected,
        JobState::Dead,
    ];

    /// The name stored in the ledger and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Unknown => "unknown",
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Stopping => "stopping",
            JobState::Terminating => "terminating",
            JobState::Suspended => "suspended",
            JobState::Resumed => "resumed",
            JobState::Successful => "successful",
            JobState::Faulted => "faulted",
            JobState::Stopped => "stopped",
            JobState::Rejected => "rejected",
            JobState::Dead => "dead",
        }
    }

    /// A stored name, or Orchestrator's (any case).
    pub fn parse(name: &str) -> Option<JobState> {
        JobState::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(name))
    }

    /// True once the job has ended.
    pub fn is_terminal(self) -> bool {
        JobState::TERMINAL.contains(&self)
    }

    /// True while the job has not reached Orchestrator for sure (queued, or unknown).
    pub fn is_waiting(self) -> bool {
        matches!(self, JobState::Queued | JobState::Unknown)
    }
}

/// A stored state this code does not know (only this code writes states).
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a job state")]
pub struct UnknownState(pub String);

impl TryFrom<String> for JobState {
    type Error = UnknownState;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        JobState::parse(&name).ok_or(UnknownState(name))
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_orchestrators_map_onto_them() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(JobState::parse("Successful"), Some(JobState::Successful));
        assert_eq!(JobState::parse("nope"), None);
        assert_eq!(JobState::ALL.iter().filter(|s| s.is_terminal()).count(), 5);
    }
}
