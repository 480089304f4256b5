//! The SQL behind `ChatStore`, each statement named. Every transition states its preconditions
//! in its `WHERE`, so a row that changed under a concurrent caller simply does not match.

use crate::queries::NamedQuery;

/// The columns every statement returns, read by name into a `ChatSession`.
macro_rules! session_columns {
    () => {
        "id, customer_id, mitra_id, status, minutes, created_at, accepted_at, ends_at, ended_at, end_reason"
    };
}

/// The same columns qualified with the alias `c`, for statements that join.
macro_rules! session_columns_c {
    () => {
        "c.id, c.customer_id, c.mitra_id, c.status, c.minutes, c.created_at, c.accepted_at, \
         c.ends_at, c.ended_at, c.end_reason"
    };
}

/// When a search that starts now schedules its next round: after one offer round, unless
/// that reaches the blast's end (then the round lasts until the blast times out). Given the
/// parameters holding the offer and the blast timeouts (s).
macro_rules! first_round_ends {
    ($offer:literal, $blast:literal) => {
        concat!(
            "CASE WHEN ",
            $offer,
            "::float8 < ",
            $blast,
            "::float8 THEN now() + make_interval(secs => ",
            $offer,
            "::float8) END"
        )
    };
}

/// A blast in one statement: the session and one first-round offer per distinct mitra; with
/// nobody to offer it to, `queued` when $4 (the line is on), else `failed` at once.
/// $1 customer, $2 minutes, $3 mitra ids, $4 queue, $5 offer timeout (s), $6 blast timeout (s).
pub const CREATE_BLAST: NamedQuery = NamedQuery {
    name: "create_blast",
    sql: concat!(
        "WITH s AS (
              INSERT INTO chat_sessions (customer_id, status, minutes, ended_at, end_reason,
                                         next_round_at)
              VALUES ($1, CASE WHEN cardinality($3::uuid[]) > 0 THEN 'searching'
                               WHEN $4::bool THEN 'queued' ELSE 'failed' END, $2,
                      CASE WHEN cardinality($3::uuid[]) > 0 OR $4::bool THEN NULL ELSE now() END,
                      CASE WHEN cardinality($3::uuid[]) > 0 OR $4::bool THEN NULL
                           ELSE 'no_bestie_available' END,
                      CASE WHEN cardinality($3::uuid[]) > 0 THEN ",
        first_round_ends!("$5", "$6"),
        " END)
              RETURNING ",
        session_columns!(),
        "),
          notified AS (
              INSERT INTO chat_request_notifications (session_id, mitra_id, expires_at)
              SELECT s.id, m.id, now() + make_interval(secs => LEAST($5::float8, $6::float8))
                FROM s, (SELECT DISTINCT unnest($3::uuid[]) AS id) m)
          SELECT ",
        session_columns!(),
        " FROM s"
    ),
};

/// Searching sessions whose round is over, with every mitra any round reached. $1 limit.
pub const DUE_ROUNDS: NamedQuery = NamedQuery {
    name: "due_rounds",
    sql: "SELECT c.id, c.offer_round,
                 ARRAY(SELECT n.mitra_id FROM chat_request_notifications n
                        WHERE n.session_id = c.id) AS offered
            FROM chat_sessions c
           WHERE c.status = 'searching' AND c.next_round_at <= now()
           ORDER BY c.next_round_at
           LIMIT $1::int8",
};

/// The next round, only if $2 is still the current one of a search that has time left; it
/// ends one offer round from now unless that reaches the search's end. $1 session, $2 round,
/// $3 offer timeout (s), $4 blast timeout (s).
pub const NEXT_ROUND: NamedQuery = NamedQuery {
    name: "next_round",
    sql: concat!(
        "UPDATE chat_sessions
            SET offer_round = offer_round + 1,
                next_round_at = CASE
                    WHEN now() + make_interval(secs => $3::float8)
                         < COALESCE(searching_since, created_at) + make_interval(secs => $4::float8)
                    THEN now() + make_interval(secs => $3::float8) END
          WHERE id = $1 AND status = 'searching' AND offer_round = $2::int4
            AND COALESCE(searching_since, created_at) > now() - make_interval(secs => $4::float8)
         RETURNING ",
        session_columns!()
    ),
};

/// The unanswered offers of sessions $1 expire now (a round ended, or the blast timed out):
/// each one a missed offer of its mitra, and an `offer_withdrawn{expired}` to it.
pub const EXPIRE_OPEN_OFFERS: NamedQuery = NamedQuery {
    name: "expire_open_offers",
    sql: "UPDATE chat_request_notifications SET response = 'expired', responded_at = now()
           WHERE session_id = ANY($1::uuid[]) AND response IS NULL
          RETURNING session_id, mitra_id",
};

/// A round's offers, open until the round or the search ends, whichever is first; a mitra
/// an earlier round reached is not offered again, and an id no mitra has (a mirror behind a
/// deletion) is left out rather than failing the round. $1 session, $2 mitras, $3 offer
/// timeout (s), $4 blast timeout (s).
pub const INSERT_OFFERS: NamedQuery = NamedQuery {
    name: "insert_offers",
    sql: "INSERT INTO chat_request_notifications (session_id, mitra_id, expires_at)
          SELECT c.id, m.id,
                 LEAST(now() + make_interval(secs => $3::float8),
                       COALESCE(c.searching_since, c.created_at) + make_interval(secs => $4::float8))
            FROM chat_sessions c, (SELECT DISTINCT unnest($2::uuid[]) AS id) m
           WHERE c.id = $1 AND EXISTS (SELECT 1 FROM mitras WHERE mitras.id = m.id)
          ON CONFLICT (session_id, mitra_id) DO NOTHING",
};

/// Counts missed offers ($1: one entry per missed offer, in any order), locking the mitras
/// in id order (two sweeps never deadlock). An offer does not count against a mitra that was
/// offline or busy (an open session: it could not have taken more) when it expired. At $2 in a
/// row the count restarts and the mitra is returned as `away`.
pub const COUNT_MISSED: NamedQuery = NamedQuery {
    name: "count_missed_offers",
    sql: "WITH missed AS (
              SELECT u.id, count(*)::int4 AS n FROM unnest($1::uuid[]) AS u(id)
                JOIN mitra_online_status o ON o.mitra_id = u.id AND o.is_online
               WHERE NOT EXISTS (SELECT 1 FROM chat_sessions c
                                  WHERE c.mitra_id = u.id
                                    AND c.status IN ('active', 'pending_payment'))
               GROUP BY u.id),
          locked AS (
              SELECT m.id FROM mitras m JOIN missed USING (id) ORDER BY m.id FOR NO KEY UPDATE)
          UPDATE mitras m
             SET missed_offers = CASE WHEN m.missed_offers + missed.n >= $2::int4
                                      THEN 0 ELSE m.missed_offers + missed.n END
            FROM missed, locked
           WHERE m.id = missed.id AND locked.id = m.id
          RETURNING m.id, m.missed_offers = 0 AS away",
};

/// The line, oldest first. $1 limit.
pub const QUEUED: NamedQuery = NamedQuery {
    name: "queued_sessions",
    sql: "SELECT id FROM chat_sessions WHERE status = 'queued'
           ORDER BY created_at, id LIMIT $1::int8",
};

/// Mitras holding an open offer (recent notifications only: none older than a blast can be
/// open). $1 blast timeout (s).
pub const OPEN_OFFER_HOLDERS: NamedQuery = NamedQuery {
    name: "open_offer_holders",
    sql: "SELECT DISTINCT n.mitra_id FROM chat_request_notifications n
            JOIN chat_sessions c ON c.id = n.session_id
           WHERE n.response IS NULL AND c.status = 'searching'
             AND n.created_at > now() - make_interval(secs => $1::float8)
             AND COALESCE(n.expires_at, n.created_at + make_interval(secs => $1::float8)) > now()",
};

/// A request leaves the line (unless its wait is over: the timer fails it): its search starts
/// now. $1 session, $2 offer timeout (s), $3 blast timeout (s), $4 queue timeout (s).
pub const DISPATCH: NamedQuery = NamedQuery {
    name: "dispatch_queued",
    sql: concat!(
        "UPDATE chat_sessions
            SET status = 'searching', searching_since = now(), next_round_at = ",
        first_round_ends!("$2", "$3"),
        "
          WHERE id = $1 AND status = 'queued'
            AND created_at > now() - make_interval(secs => $4::float8)
         RETURNING ",
        session_columns!()
    ),
};

/// Serializes the request-creating transactions of one customer (transaction-scoped; a hash
/// collision between two customers only makes them wait for each other). $1 customer.
pub const LOCK_CUSTOMER: NamedQuery = NamedQuery {
    name: "lock_customer",
    sql: "SELECT pg_advisory_xact_lock(hashtext('halo.customer:' || $1::uuid::text))::text",
};

/// The customer's open requests, oldest first, after `LOCK_CUSTOMER`: searching within the blast
/// timeout, awaiting payment within the payment timeout, queued within the queue timeout (older
/// ones are the timer's to close). $1 customer, $2 blast, $3 payment, $4 queue timeout (s).
pub const OPEN_REQUESTS_OF_CUSTOMER: NamedQuery = NamedQuery {
    name: "open_requests_of_customer",
    sql: "SELECT id FROM chat_sessions
           WHERE customer_id = $1
             AND ((status = 'searching'
                   AND COALESCE(searching_since, created_at)
                       > now() - make_interval(secs => $2::float8))
               OR (status = 'pending_payment'
                   AND created_at > now() - make_interval(secs => $3::float8))
               OR (status = 'queued'
                   AND created_at > now() - make_interval(secs => $4::float8)))
           ORDER BY created_at, id",
};

/// Serializes every slot-taking transition of one mitra (accept, targeted request, reroute)
/// and reads whether it is active: deactivation updates this row, so it waits for the lock and
/// the answer is exact whatever the mirror says. `NO KEY`: foreign-key checks of other sessions
/// referencing the mitra (a blast's notification rows) need not wait. No row = unknown mitra.
pub const LOCK_MITRA: NamedQuery = NamedQuery {
    name: "lock_mitra",
    sql: "SELECT is_active FROM mitras WHERE id = $1 FOR NO KEY UPDATE",
};

/// Runs after `LOCK_MITRA`, in a statement of its own so its snapshot includes whatever the
/// previous lock holder committed. $1 mitra.
pub const MITRA_OPEN_SESSIONS: NamedQuery = NamedQuery {
    name: "mitra_open_sessions",
    sql: "SELECT count(*) AS open FROM chat_sessions
           WHERE mitra_id = $1 AND status IN ('active', 'pending_payment')",
};

/// Locks the session row (after `LOCK_MITRA`, before its notifications: the order every
/// transition that expires or adds offers uses, session then notifications), so an accept and
/// a round change of the same session take turns. $1 session.
pub const LOCK_SESSION: NamedQuery = NamedQuery {
    name: "lock_session",
    sql: "SELECT id FROM chat_sessions WHERE id = $1 FOR NO KEY UPDATE",
};

/// After `LOCK_MITRA` and `LOCK_SESSION`: whether the mitra holds an open offer of the session
/// (unanswered, its round not over — by the clock of this statement, not of the transaction,
/// which may have waited for the locks), whether it already won it (a retry: answered before
/// the capacity check, which would count the won session), and its open-session count.
/// $1 session, $2 mitra.
pub const ACCEPT_CHECK: NamedQuery = NamedQuery {
    name: "accept_check",
    sql: "SELECT EXISTS (SELECT 1 FROM chat_request_notifications
                          WHERE session_id = $1 AND mitra_id = $2 AND response IS NULL
                            AND (expires_at IS NULL OR expires_at > statement_timestamp()))
                     AS offered,
                 EXISTS (SELECT 1 FROM chat_request_notifications
                          WHERE session_id = $1 AND mitra_id = $2 AND response = 'accepted')
                     AS won,
                 (SELECT count(*) FROM chat_sessions
                   WHERE mitra_id = $2 AND status IN ('active', 'pending_payment')) AS open",
};

/// First accept wins: only a `searching` session within the blast timeout matches (a late timer
/// tick changes nothing); the notification is marked and the mitra's missed-offer count
/// restarts only when the session was taken. The clock starts now. $1 session, $2 mitra,
/// $3 blast timeout (s).
pub const ACCEPT_SESSION: NamedQuery = NamedQuery {
    name: "accept_session",
    sql: concat!(
        "WITH s AS (
              UPDATE chat_sessions
                 SET status = 'active', mitra_id = $2, accepted_at = now(),
                     ends_at = now() + make_interval(mins => minutes)
               WHERE id = $1 AND status = 'searching'
                 AND COALESCE(searching_since, created_at) > now() - make_interval(secs => $3::float8)
           RETURNING ",
        session_columns!(),
        "),
          marked AS (
              UPDATE chat_request_notifications SET response = 'accepted', responded_at = now()
               WHERE session_id = $1 AND mitra_id = $2 AND response IS NULL
                 AND EXISTS (SELECT 1 FROM s)),
          answered AS (
              UPDATE mitras SET missed_offers = 0
               WHERE id = $2 AND missed_offers <> 0 AND EXISTS (SELECT 1 FROM s))
          SELECT ",
        session_columns!(),
        " FROM s"
    ),
};

/// $1 customer, $2 mitra, $3 minutes (after `LOCK_MITRA` and the capacity check).
pub const CREATE_TARGETED: NamedQuery = NamedQuery {
    name: "create_targeted",
    sql: concat!(
        "INSERT INTO chat_sessions (customer_id, mitra_id, status, minutes)
         VALUES ($1, $2, 'pending_payment', $3)
         RETURNING ",
        session_columns!()
    ),
};

pub const SESSION: NamedQuery = NamedQuery {
    name: "chat_session",
    sql: concat!(
        "SELECT ",
        session_columns!(),
        " FROM chat_sessions WHERE id = $1"
    ),
};

/// Within the payment timeout only; the payment is captured in the same statement (both or
/// neither). $1 session, $2 customer, $3 payment timeout (s), $4 provider reference.
pub const PAY: NamedQuery = NamedQuery {
    name: "pay_session",
    sql: concat!(
        "WITH s AS (
              UPDATE chat_sessions
                 SET status = 'active', accepted_at = now(),
                     ends_at = now() + make_interval(mins => minutes)
               WHERE id = $1 AND customer_id = $2 AND status = 'pending_payment'
                 AND created_at > now() - make_interval(secs => $3::float8)
              RETURNING ",
        session_columns!(),
        "),
          captured AS (
              UPDATE payments SET status = 'captured', reference = $4, updated_at = now()
               WHERE session_id = $1 AND EXISTS (SELECT 1 FROM s))
          SELECT ",
        session_columns!(),
        " FROM s"
    ),
};

/// The outbox row, before the provider charges: a new one, or the unsettled one again (same
/// attempt: the retry charges once), or the next attempt after a refund. $1 session, $2 customer.
pub const START_PAYMENT: NamedQuery = NamedQuery {
    name: "start_payment",
    sql: "INSERT INTO payments (session_id, customer_id, status) VALUES ($1, $2, 'charging')
          ON CONFLICT (session_id) DO UPDATE
             SET attempt = CASE WHEN payments.status = 'refunded' THEN payments.attempt + 1
                                ELSE payments.attempt END,
                 status = CASE WHEN payments.status = 'refunded' THEN 'charging'
                               ELSE payments.status END,
                 updated_at = now()
          RETURNING attempt",
};

/// $1 session, $2 attempt.
pub const RECORD_REFUND: NamedQuery = NamedQuery {
    name: "record_refund",
    sql: "UPDATE payments SET status = 'refunded', updated_at = now()
           WHERE session_id = $1 AND attempt = $2 AND status = 'charging'",
};

/// Unsettled payments whose session no longer awaits payment (the payment timer cancelled it,
/// or the process died between the charge and the session's start). $1 age (s), $2 limit.
pub const UNSETTLED_PAYMENTS: NamedQuery = NamedQuery {
    name: "unsettled_payments",
    sql:
        "SELECT p.session_id, p.attempt FROM payments p JOIN chat_sessions c ON c.id = p.session_id
           WHERE p.status = 'charging' AND p.updated_at < now() - make_interval(secs => $1::float8)
             AND c.status <> 'pending_payment'
           ORDER BY p.updated_at LIMIT $2::int8",
};

/// Records a rejection (never over an earlier answer; an answer restarts the mitra's
/// missed-offer count), after `LOCK_MITRA`: the mitra row before the notification, the order
/// accept takes them in. `reached` = the blast reached the mitra. $1 session, $2 mitra.
pub const REJECT: NamedQuery = NamedQuery {
    name: "reject_request",
    sql: "WITH answered AS (
              UPDATE chat_request_notifications SET response = 'rejected', responded_at = now()
               WHERE session_id = $1 AND mitra_id = $2 AND response IS NULL
              RETURNING mitra_id),
          counted AS (
              UPDATE mitras SET missed_offers = 0
               WHERE id IN (SELECT mitra_id FROM answered) AND missed_offers <> 0)
          SELECT EXISTS (SELECT 1 FROM chat_request_notifications
                          WHERE session_id = $1 AND mitra_id = $2) AS reached",
};

/// Ends or cancels an open session of one party: exactly one of $2 (customer) and $3 (mitra) is
/// set, so the other comparison is NULL and only the party's own column decides. Also says
/// whether it left the line (the others' places change). $1 session, $2 customer, $3 mitra,
/// $4 reason.
pub const END: NamedQuery = NamedQuery {
    name: "end_session",
    sql: concat!(
        "WITH old AS (
              SELECT id, status FROM chat_sessions
               WHERE id = $1 AND status IN ('active', 'searching', 'pending_payment', 'queued')
                 AND (customer_id = $2::uuid OR mitra_id = $3::uuid)
                 FOR UPDATE)
          UPDATE chat_sessions c
             SET status = CASE WHEN c.status = 'active' THEN 'ended' ELSE 'cancelled' END,
                 ended_at = now(), end_reason = $4
            FROM old
           WHERE c.id = old.id
          RETURNING ",
        session_columns_c!(),
        ", old.status = 'queued' AS left_line"
    ),
};

/// Adds time to a running session; one whose time is up is over even before the timer sweep
/// marks it. $1 session, $2 customer, $3 minutes.
pub const EXTEND: NamedQuery = NamedQuery {
    name: "extend_session",
    sql: concat!(
        "UPDATE chat_sessions
            SET ends_at = ends_at + make_interval(mins => $3::int4), minutes = minutes + $3::int4
          WHERE id = $1 AND customer_id = $2 AND status = 'active' AND ends_at > now()
         RETURNING ",
        session_columns!()
    ),
};

/// Moves an active session (after `LOCK_MITRA` of the target and, unless forced, its capacity
/// check); the locked old row gives the previous mitra. $1 session, $2 mitra.
pub const REROUTE: NamedQuery = NamedQuery {
    name: "reroute_session",
    sql: concat!(
        "WITH old AS (
              SELECT id, mitra_id FROM chat_sessions WHERE id = $1 AND status = 'active' FOR UPDATE)
          UPDATE chat_sessions c SET mitra_id = $2
            FROM old
           WHERE c.id = old.id
          RETURNING ",
        session_columns_c!(),
        ", old.mitra_id AS previous_mitra_id"
    ),
};

/// The mitra's open offers, each with its expiry. Only notifications younger than the blast
/// timeout can be open, which bounds the index range scan however long the mitra's history.
/// $1 mitra, $2 blast timeout (s).
pub const OPEN_REQUESTS: NamedQuery = NamedQuery {
    name: "open_requests",
    sql: concat!(
        "SELECT ",
        session_columns_c!(),
        ", COALESCE(n.expires_at, n.created_at + make_interval(secs => $2::float8))
             AS offer_expires_at
           FROM chat_request_notifications n
           JOIN chat_sessions c ON c.id = n.session_id
          WHERE n.mitra_id = $1 AND n.response IS NULL AND c.status = 'searching'
            AND n.created_at > now() - make_interval(secs => $2::float8)
            AND COALESCE(n.expires_at, n.created_at + make_interval(secs => $2::float8)) > now()
            AND COALESCE(c.searching_since, c.created_at) > now() - make_interval(secs => $2::float8)
          ORDER BY c.created_at DESC, c.id"
    ),
};

/// The timer sweep in one statement. `SKIP LOCKED` lets several instances sweep at once, each
/// claiming different rows; a row another caller already moved fails the recheck of the locked
/// version and is left out. $1 now, $2 blast, $3 payment, $5 queue timeout (s), $4 limit.
pub const EXPIRE_DUE: NamedQuery = NamedQuery {
    name: "expire_due",
    sql: concat!(
        "WITH due AS (
              SELECT id FROM chat_sessions
               WHERE (status = 'active' AND ends_at <= $1::timestamptz)
                  OR (status = 'searching'
                      AND COALESCE(searching_since, created_at)
                          <= $1::timestamptz - $2::float8 * interval '1 second')
                  OR (status = 'pending_payment'
                      AND created_at <= $1::timestamptz - $3::float8 * interval '1 second')
                  OR (status = 'queued'
                      AND created_at <= $1::timestamptz - $5::float8 * interval '1 second')
               ORDER BY CASE status WHEN 'active' THEN ends_at ELSE created_at END
               LIMIT $4::int8
                 FOR UPDATE SKIP LOCKED)
          UPDATE chat_sessions c
             SET status = CASE c.status WHEN 'active' THEN 'ended'
                                        WHEN 'pending_payment' THEN 'cancelled'
                                        ELSE 'failed' END,
                 end_reason = CASE c.status WHEN 'active' THEN 'expired'
                                            WHEN 'searching' THEN 'blast_timeout'
                                            WHEN 'queued' THEN 'queue_timeout'
                                            ELSE 'payment_timeout' END,
                 ended_at = $1::timestamptz
            FROM due
           WHERE c.id = due.id
          RETURNING ",
        session_columns_c!()
    ),
};

pub const DATABASE_NOW: NamedQuery = NamedQuery {
    name: "database_now",
    sql: "SELECT now() AS now",
};

pub const COUNT_ACTIVE: NamedQuery = NamedQuery {
    name: "count_active_sessions",
    sql: "SELECT count(*) AS count FROM chat_sessions WHERE status = 'active'",
};
