//! `Gated`: a closed gate fails calls as the port's `Unavailable` without passing them on, by
//! name or all of them, and journals the calls of every port behind it in order.

use halo_fakes::{Gate, Gated, InMemoryMirror, InMemoryTruth, ManualClock};
use halo_ports::{
    AvailabilityTruth, MirrorError, MirrorHotPath, MirrorMaintenance, OnlineReason, TruthError,
};
use std::sync::Arc;

struct Rig {
    gate: Arc<Gate>,
    truth: Arc<InMemoryTruth>,
    mirror: Arc<InMemoryMirror>,
    gated_truth: Gated<InMemoryTruth>,
    gated_mirror: Gated<InMemoryMirror>,
}

fn rig() -> Rig {
    let gate = Gate::new();
    let truth = Arc::new(InMemoryTruth::new(Arc::new(ManualClock::default())));
    let mirror = Arc::new(InMemoryMirror::new());
    Rig {
        gated_truth: Gated::new(truth.clone(), gate.clone()),
        gated_mirror: Gated::new(mirror.clone(), gate.clone()),
        gate,
        truth,
        mirror,
    }
}

#[tokio::test]
async fn a_closed_gate_fails_every_call_without_passing_it_on() {
    let r = rig();
    r.gated_mirror.ping().await.unwrap();
    r.gated_truth.ping().await.unwrap();
    r.gate.close();
    let refused = r.gated_mirror.ping().await;
    assert!(
        matches!(refused, Err(MirrorError::Unavailable(_))),
        "{refused:?}"
    );
    let refused = r.gated_truth.count_online().await;
    assert!(
        matches!(refused, Err(TruthError::Unavailable(_))),
        "{refused:?}"
    );
    assert_eq!(
        (r.mirror.calls("ping"), r.truth.calls()),
        (1, 1),
        "not passed on"
    );
    r.gate.open();
    assert_eq!(r.gated_truth.count_online().await.unwrap(), 0);
}

#[tokio::test]
async fn a_call_closed_by_name_fails_alone_until_the_gate_opens() {
    let r = rig();
    let id = r.truth.add_mitra();
    r.gate.close_call("truth.set_online");
    let refused = r
        .gated_truth
        .set_online(id, true, OnlineReason::Manual)
        .await;
    assert!(
        matches!(refused, Err(TruthError::Unavailable(_))),
        "{refused:?}"
    );
    assert!(!r.truth.state_of(id).unwrap().online);
    r.gated_truth.set_active(id, false).await.unwrap();
    r.gated_mirror.ping().await.unwrap();
    r.gate.open();
    let changed = r
        .gated_truth
        .set_online(id, true, OnlineReason::Manual)
        .await;
    assert!(changed.unwrap());
}

#[tokio::test]
async fn the_journal_holds_the_calls_of_every_port_in_order() {
    let r = rig();
    let id = r.truth.add_mitra();
    r.gated_truth.set_active(id, false).await.unwrap();
    r.gate.close();
    let _ = r.gated_mirror.set_deactivated(id, true).await;
    r.gate.open();
    r.gated_truth.mitra_flags(id).await.unwrap();
    assert_eq!(
        r.gate.journal(),
        [
            "truth.set_active",
            "mirror.set_deactivated",
            "truth.mitra_flags"
        ],
        "failed calls too"
    );
}
