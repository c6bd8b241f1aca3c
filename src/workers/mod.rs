//! Background work. Each worker runs until its cancellation token fires.

pub mod dispatcher;
pub mod token_refresh;
