//! The SQL behind the app-event log (`EventLog`) and the events the chat transitions append.
//! See migration V7 for why `seq` is taken under `LOCK_EVENT_ORDER`.

use crate::queries::NamedQuery;

/// The columns every read returns, read by name into a `LoggedEvent`.
macro_rules! event_columns {
    () => {
        "seq, audience, kind, session_id, status, mitra_id, minutes, ends_at, expires_at, reason, \
         queue_position, estimated_wait_seconds, available_count"
    };
}

/// Taken last in every transaction that appends events, and held until its commit is visible
/// (transaction-scoped): `seq` is then assigned in commit order. Two-key form, so it cannot
/// collide with the one-key customer locks.
pub const LOCK_EVENT_ORDER: NamedQuery = NamedQuery {
    name: "lock_event_order",
    sql: "SELECT pg_advisory_xact_lock(hashtext('halo.app_events'), 0)::text",
};

/// A moving average of recent waits in line (the last 20 requests that left it within the
/// hour), in whole seconds; NULL before anyone waited.
macro_rules! recent_wait {
    () => {
        "(SELECT round(avg(extract(epoch FROM w.searching_since - w.created_at)))::int4
            FROM (SELECT searching_since, created_at FROM chat_sessions
                   WHERE searching_since > now() - interval '1 hour'
                   ORDER BY searching_since DESC LIMIT 20) w)"
    };
}

/// The places in line: every queued session with its position (1 = next); an optional extra
/// condition (`AND …`) can skip the ranking altogether.
macro_rules! queue_line {
    () => {
        queue_line!("")
    };
    ($gate:literal) => {
        concat!(
            "(SELECT id, row_number() OVER (ORDER BY created_at, id)::int4 AS position
                FROM chat_sessions WHERE status = 'queued' ",
            $gate,
            ")"
        )
    };
}

/// The events of the transitions of sessions $1, derived from their state as this transaction
/// left it (after `LOCK_EVENT_ORDER`):
/// - `session` to the customer (with its place in line while queued), to the session's mitra,
///   and (`reassigned`) to $3, the mitra a reroute took it from;
/// - `offer` to every mitra holding an unanswered offer while the session is searching (a
///   blast, or its next round), expiring with the offer;
/// - `offer_withdrawn` to the notified mitras that did not answer, when the blast ended:
///   cancelled → `cancelled`, active → $2 (`taken`, passed by the accept only: a later
///   transition of an active session withdraws nothing again); and `expired` to the mitras
///   whose offers this transaction expired (a round or the blast timed out): $5/$6.
///
/// $1 sessions, $2 withdraw reason of an accept, $3 previous mitra, $4 blast timeout (s),
/// $5 and $6 the (session, mitra) pairs of the offers this transaction expired, $7 true when
/// only the offers changed (a new round: the parties' `session` events would say nothing new).
pub const APPEND_TRANSITION_EVENTS: NamedQuery = NamedQuery {
    name: "append_transition_events",
    sql: concat!(
        "WITH s AS (
              SELECT id, customer_id, mitra_id, status, minutes, created_at, searching_since,
                     ends_at
                FROM chat_sessions WHERE id = ANY($1::uuid[])),
          unanswered AS (
              SELECT n.session_id, array_agg(n.mitra_id ORDER BY n.mitra_id) AS mitras,
                     max(COALESCE(n.expires_at, COALESCE(s.searching_since, s.created_at)
                                                + make_interval(secs => $4::float8)))
                         AS expires_at
                FROM chat_request_notifications n JOIN s ON s.id = n.session_id
               WHERE n.response IS NULL
               GROUP BY n.session_id),
          just_expired AS (
              SELECT x.session_id, array_agg(x.mitra_id ORDER BY x.mitra_id) AS mitras
                FROM unnest($5::uuid[], $6::uuid[]) AS x(session_id, mitra_id)
               GROUP BY x.session_id),
          place AS (
              -- The line is ranked only when one of these sessions is in it: every other
              -- transition skips that work (an uncorrelated filter Postgres checks once).
              SELECT line.* FROM ",
        queue_line!("AND EXISTS (SELECT 1 FROM s WHERE s.status = 'queued')"),
        " line JOIN s USING (id)),
          e AS (
              SELECT s.id, 1 AS ord, 'customer' AS audience, ARRAY[s.customer_id] AS recipients,
                     'session' AS kind, s.status, s.mitra_id, s.minutes, s.ends_at,
                     NULL::timestamptz AS expires_at, NULL::text AS reason,
                     place.position AS queue_position,
                     CASE WHEN place.position IS NOT NULL THEN ",
        recent_wait!(),
        " END AS estimated_wait_seconds
                FROM s LEFT JOIN place USING (id) WHERE NOT $7::bool
              UNION ALL
              SELECT s.id, 2, 'mitra', ARRAY[s.mitra_id], 'session', s.status, s.mitra_id,
                     s.minutes, s.ends_at, NULL, NULL, NULL, NULL
                FROM s WHERE s.mitra_id IS NOT NULL AND NOT $7::bool
              UNION ALL
              SELECT s.id, 3, 'mitra', ARRAY[$3::uuid], 'session', 'reassigned', s.mitra_id,
                     s.minutes, s.ends_at, NULL, NULL, NULL, NULL
                FROM s WHERE $3::uuid IS NOT NULL
              UNION ALL
              SELECT s.id, 4, 'mitra', x.mitras, 'offer_withdrawn', NULL, NULL, NULL, NULL, NULL,
                     'expired', NULL, NULL
                FROM s JOIN just_expired x ON x.session_id = s.id
              UNION ALL
              SELECT s.id, 5, 'mitra', u.mitras, 'offer', NULL, NULL, s.minutes, NULL,
                     u.expires_at, NULL, NULL, NULL
                FROM s JOIN unanswered u ON u.session_id = s.id
               WHERE s.status = 'searching'
              UNION ALL
              SELECT s.id, 6, 'mitra', u.mitras, 'offer_withdrawn', NULL, NULL, NULL, NULL, NULL,
                     CASE s.status WHEN 'failed' THEN 'expired'
                                   WHEN 'cancelled' THEN 'cancelled'
                                   WHEN 'active' THEN $2::text END,
                     NULL, NULL
                FROM s JOIN unanswered u ON u.session_id = s.id
               WHERE s.status IN ('failed', 'cancelled') OR (s.status = 'active' AND $2::text IS NOT NULL))
          INSERT INTO app_events (seq, audience, recipients, kind, session_id, status, mitra_id,
                                  minutes, ends_at, expires_at, reason, queue_position,
                                  estimated_wait_seconds)
          SELECT nextval('app_events_seq'), audience, recipients, kind, id, status, mitra_id,
                 minutes, ends_at, expires_at, reason, queue_position, estimated_wait_seconds
            FROM (SELECT * FROM e ORDER BY id, ord) ordered"
    ),
};

/// After sessions left the line: every customer still in it is told its new place (one
/// `session` event each, in line order), after `LOCK_EVENT_ORDER`.
pub const APPEND_QUEUE_PLACES: NamedQuery = NamedQuery {
    name: "append_queue_places",
    sql: concat!(
        "WITH wait AS (SELECT ",
        recent_wait!(),
        " AS seconds)
          INSERT INTO app_events (seq, audience, recipients, kind, session_id, status, minutes,
                                  queue_position, estimated_wait_seconds)
          SELECT nextval('app_events_seq'), 'customer', ARRAY[c.customer_id], 'session', c.id,
                 'queued', c.minutes, line.position, wait.seconds
            FROM ",
        queue_line!(),
        " line JOIN chat_sessions c USING (id), wait
           ORDER BY line.position"
    ),
};

/// An `availability` event to every customer with count $1, unless the newest one says the
/// same (after `LOCK_EVENT_ORDER`).
pub const APPEND_AVAILABILITY: NamedQuery = NamedQuery {
    name: "append_availability",
    sql: "WITH newest AS (
              SELECT available_count FROM app_events WHERE kind = 'availability'
               ORDER BY seq DESC LIMIT 1)
          INSERT INTO app_events (seq, audience, recipients, kind, available_count)
          SELECT nextval('app_events_seq'), 'customer', '{}', 'availability', $1::int4
           WHERE NOT EXISTS (SELECT 1 FROM newest WHERE (available_count > 0) = ($1::int4 > 0))
          RETURNING seq",
};

/// The newest `availability` event, for a customer stream's first state.
pub const NEWEST_AVAILABILITY: NamedQuery = NamedQuery {
    name: "newest_availability",
    sql: concat!(
        "SELECT ",
        event_columns!(),
        ", recipients FROM app_events WHERE kind = 'availability' ORDER BY seq DESC LIMIT 1"
    ),
};

/// `away` with reason $2 to mitras $1, set offline by the system (after `LOCK_EVENT_ORDER`).
pub const APPEND_AWAY: NamedQuery = NamedQuery {
    name: "append_away",
    sql: "INSERT INTO app_events (seq, audience, recipients, kind, reason)
          SELECT nextval('app_events_seq'), 'mitra', ARRAY[m], 'away', $2::text
            FROM unnest($1::uuid[]) AS m",
};

pub const EVENTS_HEAD: NamedQuery = NamedQuery {
    name: "events_head",
    sql: "SELECT COALESCE(max(seq), 0) AS head FROM app_events",
};

/// The pump's read: every audience. $1 after, $2 limit.
pub const EVENTS_AFTER: NamedQuery = NamedQuery {
    name: "events_after",
    sql: concat!(
        "SELECT ",
        event_columns!(),
        ", recipients FROM app_events WHERE seq > $1 ORDER BY seq LIMIT $2"
    ),
};

/// A resume: one recipient's events, its own and those to its whole audience (a range scan of
/// the recent log; the recipient is named alone in `recipients`). $1 audience, $2 recipient, $3 after, $4 limit.
pub const EVENTS_FOR: NamedQuery = NamedQuery {
    name: "events_for",
    sql: concat!(
        "SELECT ",
        event_columns!(),
        ", ARRAY[$2::uuid] AS recipients FROM app_events
          WHERE seq > $3 AND audience = $1
            AND ($2::uuid = ANY(recipients) OR recipients = '{}')
          ORDER BY seq LIMIT $4"
    ),
};

/// Whether $1 is a position from which nothing was pruned: at or after the oldest event's
/// predecessor (pruning deletes a prefix), and not beyond the newest.
pub const EVENTS_RESUMABLE: NamedQuery = NamedQuery {
    name: "events_resumable",
    sql: "SELECT min(seq) IS NOT NULL AND $1 >= min(seq) - 1 AND $1 <= max(seq) AS resumable
            FROM app_events",
};

/// A mitra's open sessions (awaiting payment or active), for its stream's first state.
/// $1 mitra.
pub const MITRA_OPEN_SESSION_ROWS: NamedQuery = NamedQuery {
    name: "mitra_open_session_rows",
    sql: "SELECT id, customer_id, mitra_id, status, minutes, created_at, accepted_at, ends_at,
                 ended_at, end_reason,
                 NULL::int4 AS queue_position, NULL::int4 AS estimated_wait_seconds
            FROM chat_sessions
           WHERE mitra_id = $1 AND status IN ('active', 'pending_payment')
           ORDER BY created_at, id",
};

/// A customer's open sessions (queued, searching, awaiting payment or active), a queued
/// one with its place in line. $1 customer.
pub const CUSTOMER_OPEN_SESSION_ROWS: NamedQuery = NamedQuery {
    name: "customer_open_session_rows",
    sql: concat!(
        "SELECT c.id, c.customer_id, c.mitra_id, c.status, c.minutes, c.created_at,
                c.accepted_at, c.ends_at, c.ended_at, c.end_reason,
                line.position AS queue_position,
                CASE WHEN line.position IS NOT NULL THEN ",
        recent_wait!(),
        " END AS estimated_wait_seconds
           FROM chat_sessions c LEFT JOIN ",
        queue_line!(),
        " line USING (id)
          WHERE c.customer_id = $1
            AND c.status IN ('queued', 'searching', 'active', 'pending_payment')
          ORDER BY c.created_at, c.id"
    ),
};

/// Deletes the oldest events up to the newest one older than $1 seconds: always a prefix of
/// the log, so `EVENTS_RESUMABLE` can tell what is gone. $1 age (s), $2 limit.
pub const PRUNE_EVENTS: NamedQuery = NamedQuery {
    name: "prune_events",
    sql: "WITH cut AS (
              SELECT max(seq) AS upto FROM app_events
               WHERE created_at < now() - make_interval(secs => $1::float8)),
          doomed AS (
              SELECT seq FROM app_events, cut WHERE seq <= cut.upto ORDER BY seq LIMIT $2)
          DELETE FROM app_events WHERE seq IN (SELECT seq FROM doomed)",
};
