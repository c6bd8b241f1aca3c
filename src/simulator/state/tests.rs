//! Unit tests of `state`.

use super::*;

#[test]
fn the_call_log_keeps_the_latest_calls_and_numbers_every_one() {
    let mut state = SimState::new(Scenario::default());
    for n in 0..MAX_CALLS + 5 {
        state.record_call(CallRecord {
            path: format!("/call/{n}"),
            ..CallRecord::default()
        });
    }
    assert_eq!(state.calls.len(), MAX_CALLS);
    assert_eq!(state.calls_seen, (MAX_CALLS + 5) as u64);
    let first = state.calls.front().unwrap();
    assert_eq!((first.seq, first.path.as_str()), (6, "/call/5"));
    let last = state.calls.back().unwrap();
    assert_eq!(last.seq, (MAX_CALLS + 5) as u64);
}
