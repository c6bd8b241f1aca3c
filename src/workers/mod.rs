//! Background work. Each worker runs until its cancellation token fires.

pub mod dispatcher;
pub mod job_sync;
pub mod token_refresh;
