//! Driver errors → port errors. "Postgres did not answer" must stay distinguishable from
//! "Postgres answered no": the first becomes `Unavailable`, the second `Query`.

use halo_ports::TruthError;

/// SQLSTATE classes that mean the server or the connection is gone, not that the query is wrong:
/// 08 connection exception, 53 insufficient resources, 57 operator intervention (includes
/// `statement_timeout` cancellation and admin shutdown).
const UNAVAILABLE_CLASSES: [&str; 3] = ["08", "53", "57"];

/// `read_only_sql_transaction`: a write reached a server that is (still) a standby, as during a
/// failover before the promotion or the DNS flip completed. The store is not writable *yet*;
/// that is an outage, not a bug in the statement.
const READ_ONLY_STANDBY: &str = "25006";

pub fn classify(error: tokio_postgres::Error) -> TruthError {
    let unavailable = match error.as_db_error() {
        // I/O and a closed connection: no answer at all. Anything else without a server
        // answer is this side's mistake (a parameter of the wrong type): a bug, not an outage.
        None => error.is_closed() || caused_by_io(&error),
        Some(db) => {
            let code = db.code().code();
            code == READ_ONLY_STANDBY || UNAVAILABLE_CLASSES.contains(&&code[..2])
        }
    };
    if unavailable {
        TruthError::Unavailable(Box::new(error))
    } else {
        TruthError::Query(Box::new(error))
    }
}

fn caused_by_io(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = error.source();
    while let Some(inner) = cause {
        if inner.is::<std::io::Error>() {
            return true;
        }
        cause = inner.source();
    }
    false
}

pub fn pool_unavailable(error: deadpool_postgres::PoolError) -> TruthError {
    TruthError::Unavailable(Box::new(error))
}
