//! The acceptance checklist (docs/ACCEPTANCE.md states every item and names its test),
//! automated over real processes: one test per item, named after its section. Every wait
//! polls with a deadline; sweep cadences are set small through the environment.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code")]

mod common;

mod a_seed;
mod abuse;
mod b_toggle;
mod c_heartbeat;
mod d_capacity;
mod degraded;
mod e_deactivation;
mod f_reads;
mod g_auto_offline;
mod h_heartbeat_mirror;
mod i_reconciliation;
mod j_failures;
mod k_multi_instance;
mod migrate;
mod operations;
mod postgres_failover;
mod postgres_outage;
mod postgres_tls;
mod production_stores;
mod s_streams;
mod setup;
mod smoke;
mod t_offers;
mod trace_export;
