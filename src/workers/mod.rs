//! Background work. Each worker runs until its cancellation token fires.

pub mod callbacks;
pub mod dispatcher;
pub mod job_sync;
pub mod reconciler;
pub mod token_refresh;
pub mod webhook_registration;
