//! Background work. Each worker runs until its cancellation token fires.

pub mod callbacks;
pub mod dispatcher;
pub mod item_sync;
pub mod job_sync;
pub mod reconciler;
pub mod token_refresh;
pub mod webhook_registration;

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Runs `pass` until cancelled: again at once while it found work (`true`), else after
/// `idle`. The first pass comes after `idle` too.
pub async fn repeat<F, Fut>(stop: CancellationToken, idle: Duration, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut busy = false;
    loop {
        if !busy {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(idle) => {}
            }
        } else if stop.is_cancelled() {
            return;
        }
        busy = pass().await;
    }
}
