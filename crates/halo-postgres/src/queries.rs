//! Every SQL statement of the adapter, each with a name used in metrics and logs.

pub struct NamedQuery {
    pub name: &'static str,
    pub sql: &'static str,
}

/// The idle rank of becoming idle at the instant `$at` (SPEC §12.5, `IdleRank`): whole
/// milliseconds since the epoch plus a random tie-break below `TIE_BREAK_SPAN` (0.99).
macro_rules! idle_rank_at {
    ($at:literal) => {
        concat!(
            "(floor(extract(epoch FROM ",
            $at,
            ") * 1000)::float8 + random() * 0.99)"
        )
    };
}

/// Sets the online flag; one audit row per real transition. Going online, or toggling online
/// again while online, stamps the heartbeat: the Postgres fallback and the auto-offline guard
/// then see a mitra that just said it is here. Only a real offline -> online transition makes
/// the mitra idle since now (SPEC §12.5). `changed` = whether the flag moved.
pub const SET_ONLINE: NamedQuery = NamedQuery {
    name: "set_online",
    sql: concat!(
        "WITH before AS (
              SELECT mitra_id, is_online FROM mitra_online_status WHERE mitra_id = $1 FOR UPDATE),
          written AS (
              UPDATE mitra_online_status s
                 SET is_online = $2, updated_at = now(),
                     last_heartbeat_at = CASE WHEN $2 THEN now() ELSE s.last_heartbeat_at END,
                     idle_rank = CASE WHEN $2 AND NOT b.is_online THEN ",
        idle_rank_at!("now()"),
        " ELSE s.idle_rank END
                FROM before b
               WHERE s.mitra_id = b.mitra_id AND (b.is_online <> $2 OR $2)
           RETURNING s.mitra_id, b.is_online <> $2 AS moved),
          logged AS (
              INSERT INTO mitra_online_logs (mitra_id, status, reason)
              SELECT mitra_id, CASE WHEN $2 THEN 'online' ELSE 'offline' END, $3
                FROM written WHERE moved)
          SELECT EXISTS (SELECT 1 FROM written WHERE moved) AS changed,
                 EXISTS (SELECT 1 FROM mitras WHERE id = $1) AS known"
    ),
};

/// The auto-offline sweep. $1 ids the mirror found stale, $2 audit reason, $3 the staleness
/// cutoff: a mitra whose `last_heartbeat_at` is at or after it stays online (its pings reached
/// Postgres while the mirror was behind). The rows are locked first, so a toggle that commits
/// meanwhile is read as committed. One row per known id: what was done with it.
pub const SET_OFFLINE_MANY: NamedQuery = NamedQuery {
    name: "set_offline_many",
    sql: "WITH target AS (
              SELECT mitra_id, is_online, last_heartbeat_at FROM mitra_online_status
               WHERE mitra_id = ANY($1) ORDER BY mitra_id FOR UPDATE),
          changed AS (
              UPDATE mitra_online_status s SET is_online = false, updated_at = now()
                FROM target t
               WHERE s.mitra_id = t.mitra_id AND t.is_online
                 AND (t.last_heartbeat_at IS NULL OR t.last_heartbeat_at < $3)
           RETURNING s.mitra_id),
          logged AS (
              INSERT INTO mitra_online_logs (mitra_id, status, reason)
              SELECT mitra_id, 'offline', $2 FROM changed)
          SELECT t.mitra_id, t.is_online, t.last_heartbeat_at, c.mitra_id IS NOT NULL AS changed
            FROM target t LEFT JOIN changed c ON c.mitra_id = t.mitra_id",
};

pub const SET_ACTIVE: NamedQuery = NamedQuery {
    name: "set_active",
    sql: "UPDATE mitras SET is_active = $2, updated_at = now() WHERE id = $1",
};

/// Guard and record in one statement: the ping lands only for an active, online mitra. A
/// heartbeat less than a second newer than the stored one is not written: pings are seconds
/// apart, freshness is judged in tens of seconds, and while Valkey is down every ping comes
/// here, so a second ping within the second costs a read, not a row version and a WAL record.
pub const HEARTBEAT_FALLBACK: NamedQuery = NamedQuery {
    name: "heartbeat_fallback",
    sql: "WITH target AS (
              SELECT m.id, m.is_active, s.is_online, s.last_heartbeat_at
                FROM mitras m JOIN mitra_online_status s ON s.mitra_id = m.id
               WHERE m.id = $1),
          stamped AS (
              UPDATE mitra_online_status s SET last_heartbeat_at = $2
                FROM target t
               WHERE s.mitra_id = t.id AND t.is_active AND s.is_online
                 AND (s.last_heartbeat_at IS NULL
                      OR s.last_heartbeat_at < $2::timestamptz - interval '1 second')
              RETURNING s.mitra_id)
          SELECT is_active,
                 EXISTS (SELECT 1 FROM stamped)
                   OR (is_online AND last_heartbeat_at >= $2::timestamptz - interval '1 second')
                   AS is_online
            FROM target",
};

pub const MITRA_FLAGS: NamedQuery = NamedQuery {
    name: "mitra_flags",
    sql: "SELECT m.is_active, s.is_online
            FROM mitras m JOIN mitra_online_status s ON s.mitra_id = m.id
           WHERE m.id = $1",
};

/// The first statement of a recount: takes the mitra's row lock and the next number in the
/// order of its counts. The count follows in its own statement (a later snapshot), so a count
/// with a higher number saw every transition a lower one saw.
pub const NEXT_CAPACITY_SEQ: NamedQuery = NamedQuery {
    name: "next_capacity_seq",
    sql: "UPDATE mitra_online_status SET capacity_seq = capacity_seq + 1
           WHERE mitra_id = $1 RETURNING capacity_seq",
};

/// The second statement of a recount: the open sessions, and the idle rank moved to the
/// latest start or end of the mitra's sessions when that is a later millisecond than the rank
/// it has (a session counts once it started: `accepted_at`; one index probe, see V8). A
/// statement of its own, so it sees every transition committed before the row lock was taken.
/// $1 mitra. (Named as before it also moved the rank: its metric series goes on.)
pub const OPEN_SESSION_COUNT: NamedQuery = NamedQuery {
    name: "open_session_count",
    sql: concat!(
        "WITH activity AS (
              SELECT max(coalesce(ended_at, accepted_at)) AS at FROM chat_sessions
               WHERE mitra_id = $1 AND accepted_at IS NOT NULL),
          moved AS (
              UPDATE mitra_online_status s SET idle_rank = ",
        idle_rank_at!("a.at"),
        "
                FROM activity a
               WHERE s.mitra_id = $1
                 AND floor(extract(epoch FROM a.at) * 1000)::float8 > floor(s.idle_rank)
           RETURNING s.idle_rank)
          SELECT (SELECT count(*) FROM chat_sessions
                   WHERE mitra_id = $1 AND status IN ('active', 'pending_payment')) AS count,
                 coalesce((SELECT idle_rank FROM moved),
                          (SELECT idle_rank FROM mitra_online_status WHERE mitra_id = $1))
                   AS idle_rank"
    ),
};

/// The columns the availability rules need, for one or many mitras.
macro_rules! mitra_state_select {
    () => {
        "SELECT m.id, s.is_online, m.is_active, s.last_heartbeat_at,
                (SELECT count(*) FROM chat_sessions c
                  WHERE c.mitra_id = m.id AND c.status IN ('active', 'pending_payment')) AS open_sessions
           FROM mitras m JOIN mitra_online_status s ON s.mitra_id = m.id"
    };
}

/// $1 mitra ids.
pub const MITRA_STATES: NamedQuery = NamedQuery {
    name: "mitra_state",
    sql: concat!(mitra_state_select!(), " WHERE m.id = ANY($1)"),
};

pub const CANDIDATE_STATES: NamedQuery = NamedQuery {
    name: "candidate_states",
    sql: concat!(mitra_state_select!(), " WHERE s.is_online AND m.is_active"),
};

/// The fallback of an offer round (SPEC §12.5): the online mitras in idle order (the partial
/// index `mitra_online_status_idle_order`), each passed through the rules as the walk reaches
/// it, until `$4` pass: the work follows the round's size and the mitras passed over, not the
/// number online. The rules are the caller's: `$1` the freshness cutoff (`stale_cutoff`), `$2`
/// `max_customers_per_mitra`; `$3` the mitras to leave out.
pub const OFFER_CANDIDATES: NamedQuery = NamedQuery {
    name: "offer_candidates",
    sql: "SELECT s.mitra_id AS id, s.is_online, m.is_active, s.last_heartbeat_at,
                 o.open AS open_sessions
            FROM mitra_online_status s
            JOIN mitras m ON m.id = s.mitra_id
           CROSS JOIN LATERAL (
                 SELECT count(*) AS open FROM chat_sessions c
                  WHERE c.mitra_id = s.mitra_id AND c.status IN ('active', 'pending_payment')) o
           WHERE s.is_online AND m.is_active
             AND s.last_heartbeat_at >= $1
             AND o.open < $2::int8
             AND s.mitra_id <> ALL ($3::uuid[])
           ORDER BY s.idle_rank, s.mitra_id
           LIMIT $4::int8",
};

pub const COUNT_ONLINE: NamedQuery = NamedQuery {
    name: "count_online",
    sql: "SELECT count(*) FROM mitra_online_status WHERE is_online",
};

pub const MIRROR_TRUTH: NamedQuery = NamedQuery {
    name: "mirror_truth",
    sql: "SELECT m.id, m.is_active, s.is_online, s.last_heartbeat_at, s.capacity_seq,
                 s.idle_rank, statement_timestamp() AS read_at,
                 coalesce(c.open, 0) AS open_sessions
            FROM mitras m
            JOIN mitra_online_status s ON s.mitra_id = m.id
            LEFT JOIN (SELECT mitra_id, count(*) AS open FROM chat_sessions
                        WHERE status IN ('active', 'pending_payment') AND mitra_id IS NOT NULL
                        GROUP BY mitra_id) c ON c.mitra_id = m.id",
};

/// The heartbeat mirror: one statement per cycle, idempotent, never moves a timestamp back
/// (several instances may run it with slightly different reads). Rows are locked in id order,
/// as the auto-offline sweep locks them, so the two sweeps never deadlock.
pub const RECORD_HEARTBEATS: NamedQuery = NamedQuery {
    name: "record_heartbeats",
    sql: "WITH locked AS (
              SELECT s.mitra_id, u.at FROM mitra_online_status s
                JOIN UNNEST($1::uuid[], $2::timestamptz[]) AS u(id, at) ON s.mitra_id = u.id
               WHERE s.last_heartbeat_at IS NULL OR s.last_heartbeat_at < u.at
               ORDER BY s.mitra_id FOR UPDATE OF s)
          UPDATE mitra_online_status s SET last_heartbeat_at = l.at
            FROM locked l
           WHERE s.mitra_id = l.mitra_id AND (s.last_heartbeat_at IS NULL OR s.last_heartbeat_at < l.at)",
};

pub const DATABASE_NOW: NamedQuery = NamedQuery {
    name: "database_now",
    sql: "SELECT now() AS now",
};

pub const PING: NamedQuery = NamedQuery {
    name: "ping",
    sql: "SELECT 1",
};

/// Creates an operator or, when the email exists, replaces the password (idempotent CLI).
pub const UPSERT_OPERATOR: NamedQuery = NamedQuery {
    name: "upsert_operator",
    sql: "INSERT INTO operators (email, password_hash) VALUES ($1, $2)
          ON CONFLICT (email) DO UPDATE SET password_hash = EXCLUDED.password_hash
          RETURNING id",
};

/// Serializes settings changes across instances (transaction-scoped).
pub const LOCK_SETTINGS: NamedQuery = NamedQuery {
    name: "lock_settings",
    sql: "SELECT pg_advisory_xact_lock(hashtext('halo.app_config'))::text",
};

/// $1 key, $2 old value, $3 new value, $4 operator.
pub const RECORD_SETTING_CHANGE: NamedQuery = NamedQuery {
    name: "record_setting_change",
    sql: "INSERT INTO app_config_history (key, old_value, new_value, changed_by)
          VALUES ($1, to_jsonb($2::bigint), to_jsonb($3::bigint), $4)",
};

/// $1 how many, newest first.
pub const SETTINGS_HISTORY: NamedQuery = NamedQuery {
    name: "settings_history",
    sql: "SELECT key, old_value, new_value, changed_by, changed_at
            FROM app_config_history ORDER BY id DESC LIMIT $1",
};

pub const SAVE_SETTING: NamedQuery = NamedQuery {
    name: "save_setting",
    sql: "INSERT INTO app_config (key, value, updated_at, updated_by) VALUES ($1, to_jsonb($2::bigint), now(), $3)
          ON CONFLICT (key) DO UPDATE
             SET value = EXCLUDED.value, updated_at = now(), updated_by = EXCLUDED.updated_by
           WHERE app_config.value IS DISTINCT FROM EXCLUDED.value",
};

macro_rules! mitra_row_select {
    () => {
        "SELECT m.id, m.phone, m.display_name, m.is_active, s.is_online, m.created_at
           FROM mitras m JOIN mitra_online_status s ON s.mitra_id = m.id"
    };
}

pub const CREATE_MITRA: NamedQuery = NamedQuery {
    name: "create_mitra",
    sql: "INSERT INTO mitras (phone, display_name) VALUES ($1, $2)
          RETURNING id, phone, display_name, is_active, false AS is_online, created_at",
};

pub const LIST_MITRAS: NamedQuery = NamedQuery {
    name: "list_mitras",
    sql: concat!(
        mitra_row_select!(),
        " ORDER BY m.created_at, m.id OFFSET $1 LIMIT $2"
    ),
};

pub const COUNT_MITRAS: NamedQuery = NamedQuery {
    name: "count_mitras",
    sql: "SELECT count(*) FROM mitras",
};

pub const MITRA_ROW: NamedQuery = NamedQuery {
    name: "mitra_row",
    sql: concat!(mitra_row_select!(), " WHERE m.id = $1"),
};

pub const LOAD_SETTINGS: NamedQuery = NamedQuery {
    name: "load_settings",
    sql: "SELECT key, value FROM app_config",
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The SQL draws the same tie-break span as `IdleRank` (the stores must order alike).
    #[test]
    fn idle_ranks_are_drawn_as_the_domain_defines_them() {
        let span = format!("random() * {}", halo_domain::TIE_BREAK_SPAN);
        for query in [&SET_ONLINE, &OPEN_SESSION_COUNT] {
            assert!(query.sql.contains(&span), "{}: {}", query.name, query.sql);
            assert!(query.sql.contains("* 1000)::float8"), "{}", query.name);
        }
    }
}
