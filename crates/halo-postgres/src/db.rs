//! What every store of this crate shares: the pool, the counters, and running named, prepared
//! statements (counted by name) on a pooled connection or inside a transaction.

use crate::error::{classify, pool_unavailable};
use crate::queries::NamedQuery;
use deadpool_postgres::{GenericClient, Object, Pool};
use halo_metrics::Metrics;
use halo_ports::TruthError;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::Row;
use tracing::Instrument;

#[derive(Clone)]
pub(crate) struct Db {
    pool: Pool,
    metrics: Metrics,
}

impl Db {
    pub(crate) fn new(pool: Pool, metrics: Metrics) -> Self {
        Self { pool, metrics }
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A pooled connection (for transactions); waiting past the pool timeout is an outage.
    pub(crate) async fn client(&self) -> Result<Object, TruthError> {
        self.pool.get().await.map_err(pool_unavailable)
    }

    pub(crate) async fn query(
        &self,
        query: &NamedQuery,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, TruthError> {
        run(&self.client().await?, &self.metrics, query, params).await
    }

    /// A statement that always returns one row.
    pub(crate) async fn query_one(
        &self,
        query: &NamedQuery,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, TruthError> {
        first_row(self.query(query, params).await?, query)
    }

    pub(crate) async fn execute(
        &self,
        query: &NamedQuery,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, TruthError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(query.sql).await.map_err(classify)?;
        self.metrics.pg_query(query.name);
        let started = std::time::Instant::now();
        let outcome = client
            .execute(&statement, params)
            .instrument(statement_span(query))
            .await;
        self.metrics.pg_query_took(query.name, started.elapsed());
        outcome.map_err(classify)
    }
}

/// Runs one named, prepared query on a connection or inside a transaction, and counts it.
pub(crate) async fn run<C: GenericClient>(
    client: &C,
    metrics: &Metrics,
    query: &NamedQuery,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, TruthError> {
    let statement = client.prepare_cached(query.sql).await.map_err(classify)?;
    metrics.pg_query(query.name);
    let started = std::time::Instant::now();
    let outcome = client
        .query(&statement, params)
        .instrument(statement_span(query))
        .await;
    metrics.pg_query_took(query.name, started.elapsed());
    outcome.map_err(classify)
}

/// A debug-level span per statement: followed under the request's span when debug logs or a
/// trace exporter ask for it, free otherwise.
fn statement_span(query: &NamedQuery) -> tracing::Span {
    tracing::debug_span!("pg", query = query.name)
}

/// The first row of a statement that always returns one.
pub(crate) fn first_row(rows: Vec<Row>, query: &NamedQuery) -> Result<Row, TruthError> {
    rows.into_iter()
        .next()
        .ok_or_else(|| TruthError::Query(format!("{} returned no row", query.name).into()))
}

/// One column by name; a type mismatch is a schema bug (`Query`).
pub(crate) fn column<'a, T: FromSql<'a>>(row: &'a Row, name: &str) -> Result<T, TruthError> {
    row.try_get(name)
        .map_err(|e| TruthError::Query(Box::new(e)))
}
