//! The switches a test of the core flips: an outage, a restart with or without the old data,
//! and the call counts that show what the core sent.

use halo_fakes::contract::{id, seed};
use halo_fakes::InMemoryMirror;
use halo_ports::{MirrorError, MirrorHotPath, MirrorMaintenance};
use time::OffsetDateTime;

fn unavailable<T: std::fmt::Debug>(result: Result<T, MirrorError>) -> bool {
    matches!(result, Err(MirrorError::Unavailable(_)))
}

#[tokio::test]
async fn down_refuses_every_call_and_keeps_the_data() {
    let m = InMemoryMirror::new();
    seed(&m, OffsetDateTime::now_utc()).await;
    m.go_down();
    assert!(unavailable(m.ping().await));
    assert!(unavailable(m.online_count().await));
    assert!(unavailable(m.set_deactivated(id(1), true).await));
    assert_eq!(m.connection_drops(), 0, "refused, not dropped");
    m.come_back();
    assert_eq!(m.online_count().await.unwrap(), 5);
    assert!(
        !m.is_deactivated(id(1)).await.unwrap(),
        "the refused write never landed"
    );
}

#[tokio::test]
async fn calls_are_counted_per_method_answered_or_refused() {
    let m = InMemoryMirror::new();
    seed(&m, OffsetDateTime::now_utc()).await;
    assert_eq!((m.calls("write_token"), m.calls("replace_all")), (1, 1));
    m.go_down();
    let _ = m.heartbeat(id(1), OffsetDateTime::now_utc()).await;
    let _ = m.mitra_state(id(1)).await;
    assert_eq!((m.calls("heartbeat"), m.calls("mitra_states")), (1, 1));
    assert_eq!(m.total_calls(), 4);
    assert_eq!(m.calls("ping"), 0);
}

#[tokio::test]
async fn a_restart_fails_the_next_call_once_and_counts_the_drop() {
    let m = InMemoryMirror::new();
    seed(&m, OffsetDateTime::now_utc()).await;
    m.restart_empty();
    assert!(
        unavailable(m.ping().await),
        "the connection was found dropped"
    );
    assert_eq!(m.connection_drops(), 1);
    m.ping().await.unwrap();
    assert!(!m.is_seeded().await.unwrap(), "came back empty");
}

/// The pitfall: a restart that loads a dump brings back the generation marker with old data.
#[tokio::test]
async fn a_restart_with_saved_data_comes_back_seeded_with_the_old_keys() {
    let m = InMemoryMirror::new();
    seed(&m, OffsetDateTime::now_utc()).await;
    m.save();
    m.set_deactivated(id(1), true).await.unwrap();
    m.restart_with_saved_data();
    let _ = m.ping().await;
    assert_eq!(m.connection_drops(), 1);
    assert!(m.is_seeded().await.unwrap());
    assert!(
        !m.is_deactivated(id(1)).await.unwrap(),
        "the write after the save is gone"
    );
}

#[tokio::test]
async fn a_flush_takes_the_marker() {
    let m = InMemoryMirror::new();
    seed(&m, OffsetDateTime::now_utc()).await;
    m.flush();
    assert!(!m.is_seeded().await.unwrap());
    assert!(matches!(m.online_count().await, Err(MirrorError::Unseeded)));
    assert_eq!(m.connection_drops(), 0, "no restart: the connection stayed");
}
