//! `Telemetry::default()` and `Telemetry::new()` are the same live handle
//! (issue 26: one was enabled and the other disabled).

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use mabeam_supervision_core::Telemetry;

#[test]
fn default_is_new_a_live_handle() {
    for telemetry in [Telemetry::new(), Telemetry::default()] {
        assert!(telemetry.is_enabled());
        let seen = Arc::new(AtomicU64::new(0));
        let counter = seen.clone();
        telemetry
            .attach("count", &[], move |_| {
                counter.fetch_add(1, Ordering::Relaxed);
            })
            .expect("a live handle takes handlers");
        telemetry.emit(&["x"], &[], &[]);
        assert_eq!(seen.load(Ordering::Relaxed), 1);
    }
}

#[test]
fn disabled_stays_disabled() {
    let telemetry = Telemetry::disabled();
    assert!(!telemetry.is_enabled());
    assert!(telemetry.attach("h", &[], |_| {}).is_err());
}
