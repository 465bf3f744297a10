//! SQL written once for both backends: the statements that are the same
//! text on PostgreSQL and SQLite (sqlx's SQLite driver reads `$N`
//! placeholders as PostgreSQL does), and [`on_pool!`] and [`on_conn!`],
//! which run one piece of Rust against whichever backend's pool a [`Pool`]
//! (or connection a [`Conn`]) holds. The
//! statements that really differ (`now()`, `GREATEST`/`MAX`, arrays,
//! casts) stay in `postgres/` and `sqlite/`.

use sqlx::postgres::{PgConnection, PgPool};
use sqlx::sqlite::{SqliteConnection, SqlitePool};

/// A borrowed connection pool of either backend.
#[derive(Clone, Copy)]
pub(crate) enum Pool<'a> {
    /// PostgreSQL.
    Postgres(&'a PgPool),
    /// SQLite.
    Sqlite(&'a SqlitePool),
}

/// `on_pool!(pool, p => expr)`: `expr` with `p` bound to the pool inside
/// `pool`, compiled once per backend, so sqlx sees each backend's concrete
/// types (sqlx's traits make code generic over the database impractical).
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            $crate::store::sql::Pool::Postgres($p) => $body,
            $crate::store::sql::Pool::Sqlite($p) => $body,
        }
    };
}
pub(crate) use on_pool;

/// `query` with the current time bound after its other parameters, when
/// backend `T` stamps rows from Rust (`AdminDialect::BINDS_NOW`).
macro_rules! stamped {
    ($t:ty, $query:expr) => {
        if <$t>::BINDS_NOW {
            $query.bind(chrono::Utc::now())
        } else {
            $query
        }
    };
}
pub(crate) use stamped;

/// A borrowed connection (or transaction) of either backend.
pub(crate) enum Conn<'a> {
    /// PostgreSQL.
    Postgres(&'a mut PgConnection),
    /// SQLite.
    Sqlite(&'a mut SqliteConnection),
}

/// [`on_pool!`] for a [`Conn`]: `expr` with `c` bound to the connection.
macro_rules! on_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::store::sql::Conn::Postgres($c) => $body,
            $crate::store::sql::Conn::Sqlite($c) => $body,
        }
    };
}
pub(crate) use on_conn;

/// A cheap round trip.
pub(crate) const PING: &str = "SELECT 1";

/// Versions of the migrations applied.
pub(crate) const APPLIED_MIGRATIONS: &str = "SELECT version FROM _sqlx_migrations WHERE success";

/// The queue position of instance `$1`, as a `CursorRow`.
pub(crate) const LOAD_CURSOR: &str =
    "SELECT site, queue_id, last_event_id, last_message_id FROM event_listeners_cursor
     WHERE instance = $1 AND queue_id IS NOT NULL";

/// When the cursor of instance `$1` last moved.
pub(crate) const CURSOR_UPDATED_AT: &str =
    "SELECT updated_at FROM event_listeners_cursor WHERE instance = $1 AND queue_id IS NOT NULL";

/// The condition, on a logged run `e` of instance `$2`, that no `cursor
/// rewind` made it to be run again (it was logged before the rewind, for
/// a listener and an inbox id the rewind covers).
macro_rules! not_rewound {
    () => {
        "NOT EXISTS (
       SELECT 1 FROM event_listeners_rewind r
       WHERE r.instance = $2 AND r.listener_name = e.listener_name
         AND e.inbox_id >= r.from_inbox_id AND e.id <= r.eventlog_through)"
    };
}
pub(crate) use not_rewound;

/// The last tagged record batch of instance `$1`, 0 if none.
pub(crate) const LAST_RECORD_BATCH: &str =
    "SELECT COALESCE((SELECT record_batch FROM event_listeners_dispatched WHERE instance = $1), 0)";

/// `(inbox id, listener)` of the runs logged for inbox ids from `$1` on,
/// leaving out those a `cursor rewind` of instance `$2` made to be run again
/// (logged before the rewind, for a listener and an inbox id it covers).
pub(crate) const DONE_RUNS: &str = concat!(
    "SELECT e.inbox_id, e.listener_name FROM event_listeners_eventlog e
     WHERE e.inbox_id >= $1 AND ",
    not_rewound!()
);

/// [`DONE_RUNS`] on PostgreSQL, reading the view's two tables: the view
/// unnests every compact row, where each row's `last_inbox` tells which
/// may hold runs from `$1` on.
pub(crate) const DONE_RUNS_COMPACT: &str = concat!(
    "SELECT e.inbox_id, e.listener_name FROM (
       SELECT id, inbox_id, listener_name FROM event_listeners_eventlog_rows WHERE inbox_id >= $1
       UNION ALL
       SELECT b.id, u.inbox_id, u.listener_name FROM event_listeners_eventruns b
       CROSS JOIN LATERAL UNNEST(b.inbox_ids, b.listeners) AS u(inbox_id, listener_name)
       WHERE b.last_inbox >= $1 AND u.inbox_id >= $1) e
     WHERE ",
    not_rewound!()
);

/// `cleanup`: event log rows older than `$1`.
pub(crate) const CLEANUP_EVENTLOG: &str =
    "DELETE FROM event_listeners_eventlog WHERE timestamp < $1";

/// On PostgreSQL the event log is a view of two tables (migration
/// `20261203000013`), and PostgreSQL deletes from neither through it: the
/// rows table's part of [`CLEANUP_EVENTLOG`] and [`RETAIN_EVENTLOG`] ...
pub(crate) const CLEANUP_EVENTLOG_ROWS: &str =
    "DELETE FROM event_listeners_eventlog_rows WHERE timestamp < $1";

/// ... and the compact table's, which counts the runs its rows held.
pub(crate) const CLEANUP_EVENTRUNS: &str =
    "WITH d AS (DELETE FROM event_listeners_eventruns WHERE logged_at < $1
                RETURNING cardinality(listeners) AS n)
     SELECT CAST(COALESCE(sum(n), 0) AS BIGINT) FROM d";

/// `Store::inbox_raw`: the raw JSON (as stored) and key id of instance `$1`'s event `$3` of origin `$2`.
pub(crate) const INBOX_RAW: &str =
    "SELECT raw, key_id FROM event_listeners_inbox WHERE instance = $1 AND queue_id = $2 AND event_id = $3";

/// `cleanup`: inbox rows received before `$1`.
pub(crate) const CLEANUP_INBOX: &str = "DELETE FROM event_listeners_inbox WHERE received_at < $1";

/// The `Summary` counts.
pub(crate) const SUMMARY_COUNTS: &str = "SELECT (SELECT count(*) FROM event_listeners_inbox),
                (SELECT count(*) FROM event_listeners_eventlog),
                (SELECT count(*) FROM event_listeners_eventlog WHERE NOT success),
                (SELECT count(*) FROM event_listeners_messagelog),
                (SELECT count(*) FROM event_listeners_useractivity),
                (SELECT count(*) FROM event_listeners_quarantine)";

/// [`SUMMARY_COUNTS`] on PostgreSQL, whose event log is two tables
/// (migration `20261203000013`).
pub(crate) const SUMMARY_COUNTS_COMPACT: &str =
    "SELECT (SELECT count(*) FROM event_listeners_inbox),
                (SELECT count(*) FROM event_listeners_eventlog_rows)
                  + (SELECT COALESCE(sum(cardinality(listeners)), 0)
                     FROM event_listeners_eventruns)::bigint,
                (SELECT count(*) FROM event_listeners_eventlog_rows WHERE NOT success),
                (SELECT count(*) FROM event_listeners_messagelog),
                (SELECT count(*) FROM event_listeners_useractivity),
                (SELECT count(*) FROM event_listeners_quarantine)";

/// `AdminStore::quarantined_count`.
pub(crate) const QUARANTINED: &str = "SELECT count(*) FROM event_listeners_quarantine";

/// `Summary::by_type`.
pub(crate) const SUMMARY_BY_TYPE: &str =
    "SELECT event_type, count(*) FROM event_listeners_inbox GROUP BY event_type ORDER BY 2 DESC, 1";

/// Every row of `event_listeners_listenerstate`, as `ListenerState`s.
pub(crate) const LISTENER_STATES: &str =
    "SELECT listener_name, enabled, reason, changed_by, changed_at
     FROM event_listeners_listenerstate ORDER BY listener_name";

/// The newest `$2` audit rows written at or after `$1`, newest first.
pub(crate) const AUDIT_ROWS: &str = "SELECT id, at, actor, action, target, detail, outcome
     FROM event_listeners_audit WHERE at >= $1
     ORDER BY at DESC, id DESC LIMIT $2";

/// The newest `$2` pending dead letters, of listener `$1` unless it is
/// empty, newest first; without their events.
pub(crate) const PENDING_DEAD_LETTERS: &str =
    "SELECT id, listener_name, inbox_id, event_type, error,
            CAST(attempts AS BIGINT) AS attempts, created_at,
            fallback_listener, fallback_outcome
     FROM event_listeners_deadletter
     WHERE replayed_at IS NULL AND ($1 = '' OR listener_name = $1)
     ORDER BY id DESC LIMIT $2";

/// `(listener, failed runs, newest success)` in the event log since `$1`.
pub(crate) const OVERVIEW_WINDOW: &str =
    "SELECT listener_name, sum(CASE WHEN success THEN 0 ELSE 1 END),
            max(CASE WHEN success THEN timestamp END)
     FROM event_listeners_eventlog WHERE timestamp >= $1
     GROUP BY listener_name";

/// `(listener, last success)` over all stats buckets.
pub(crate) const OVERVIEW_STATS: &str =
    "SELECT listener_name, max(last_success) FROM event_listeners_listenerstats
     GROUP BY listener_name";

/// `(listener, last success)` over the whole event log.
pub(crate) const OVERVIEW_EVENTLOG: &str =
    "SELECT listener_name, max(timestamp) FROM event_listeners_eventlog
     WHERE success GROUP BY listener_name";

/// The oldest event log row's time.
pub(crate) const OLDEST_RUN: &str = "SELECT min(timestamp) FROM event_listeners_eventlog";

/// Inbox rows at or below their instance's `dispatched_through` have all
/// their runs recorded; the others are still waiting for some.
macro_rules! undispatched {
    () => {
        "i.id > COALESCE(
    (SELECT d.dispatched_through FROM event_listeners_dispatched d WHERE d.instance = i.instance), 0)"
    };
}

/// Retention: stats buckets starting before `$1`.
pub(crate) const RETAIN_STATS: &str =
    "DELETE FROM event_listeners_listenerstats WHERE bucket_start < $1";

/// Retention: `$table`'s runs (its time column `$at`) older than `$1`
/// whose inbox row is dispatched, wrapped by `$head`/`$tail`.
macro_rules! retain_runs {
    ($head:literal, $table:literal, $at:literal, $tail:literal) => {
        concat!(
            $head,
            "DELETE FROM ",
            $table,
            " WHERE ",
            $at,
            " < $1 AND NOT EXISTS (
       SELECT 1 FROM event_listeners_inbox i
       WHERE i.id = ",
            $table,
            ".inbox_id AND ",
            undispatched!(),
            ")",
            $tail
        )
    };
}

/// Retention: event log rows older than `$1` whose inbox row is dispatched.
pub(crate) const RETAIN_EVENTLOG: &str =
    retain_runs!("", "event_listeners_eventlog", "timestamp", "");

/// [`RETAIN_EVENTLOG`] on PostgreSQL: the rows table ...
pub(crate) const RETAIN_EVENTLOG_ROWS: &str =
    retain_runs!("", "event_listeners_eventlog_rows", "timestamp", "");

/// ... and the compact one, counting runs (see [`CLEANUP_EVENTRUNS`]). A
/// compact row holds one recorder batch of one organization, so it goes
/// when its highest inbox id is dispatched: the watermark has then passed
/// every one of its runs' events.
pub(crate) const RETAIN_EVENTRUNS: &str = concat!(
    "WITH d AS (DELETE FROM event_listeners_eventruns b WHERE b.logged_at < $1 AND NOT EXISTS (
       SELECT 1 FROM event_listeners_inbox i WHERE i.id = b.last_inbox AND ",
    undispatched!(),
    ") RETURNING cardinality(b.listeners) AS n)
     SELECT CAST(COALESCE(sum(n), 0) AS BIGINT) FROM d"
);

/// Retention: dispatched inbox rows received before `$1`.
pub(crate) const RETAIN_INBOX: &str = concat!(
    "DELETE FROM event_listeners_inbox AS i WHERE i.received_at < $1 AND NOT (",
    undispatched!(),
    ")"
);

/// `(listener, error, failed runs)` since `$1` (of listener `$2` unless
/// NULL), the `$3` most frequent per listener.
pub(crate) const TOP_ERRORS: &str = "SELECT listener_name, error, n FROM (
       SELECT listener_name, error, count(*) AS n,
              row_number() OVER (PARTITION BY listener_name
                                 ORDER BY count(*) DESC, COALESCE(error, '')) AS rank
       FROM event_listeners_eventlog
       WHERE timestamp >= $1 AND NOT success AND (CAST($2 AS TEXT) IS NULL OR listener_name = $2)
       GROUP BY listener_name, error) g
     WHERE rank <= $3";

/// `(listener, bucket start, runs)` of buckets from `$1` on (of listener
/// `$2` unless NULL).
pub(crate) const VOLUME: &str =
    "SELECT listener_name, bucket_start, total_events FROM event_listeners_listenerstats
     WHERE bucket_start >= $1 AND (CAST($2 AS TEXT) IS NULL OR listener_name = $2)
     ORDER BY listener_name, bucket_start";

/// `(listener, last success)` over the stats buckets (of listener `$1`
/// unless NULL).
pub(crate) const STATS_LAST_SUCCESS: &str =
    "SELECT listener_name, max(last_success) FROM event_listeners_listenerstats
     WHERE CAST($1 AS TEXT) IS NULL OR listener_name = $1
     GROUP BY listener_name";

/// The open (pending or sending) replies of instance `$1`, oldest first,
/// at most `$2`, as `OutboxRow`s.
pub(crate) const OPEN_REPLIES: &str =
    "SELECT id, listener_name, inbox_id, seq, status, recipient_type, channel, topic, user_ids,
            content, key_id, attempts, queue_id, echo_after, updated_at, error
     FROM event_listeners_replyoutbox
     WHERE instance = $1 AND status IN ('pending', 'sending')
     ORDER BY id LIMIT $2";

/// How many replies of instance `$1` are open.
pub(crate) const OPEN_REPLY_COUNT: &str = "SELECT count(*) FROM event_listeners_replyoutbox
     WHERE instance = $1 AND status IN ('pending', 'sending')";

/// Reply `$1` is being posted on queue `$2` (at `$3`): one more attempt, and
/// the inbox position its echo is searched from, kept from the first
/// attempt (an echo of any attempt confirms it). The inbox's largest id over
/// every instance is a sound floor: ids only grow, and the echo is stored
/// after this commits.
pub(crate) const MARK_REPLY_SENDING: &str = "UPDATE event_listeners_replyoutbox
     SET status = 'sending', queue_id = $2, attempts = attempts + 1, error = NULL,
         echo_after = COALESCE(echo_after,
                               (SELECT COALESCE(max(id), 0) FROM event_listeners_inbox)),
         updated_at = $3
     WHERE id = $1 AND status IN ('pending', 'sending')";

/// Reply `$1`'s POST failed without saying whether Zulip took it (error
/// `$2`, at `$3`): it stays 'sending' until its echo, or its absence, says.
pub(crate) const MARK_REPLY_UNKNOWN: &str = "UPDATE event_listeners_replyoutbox
     SET error = $2, updated_at = $3 WHERE id = $1 AND status = 'sending'";

/// Reply `$1` was refused before Zulip processed it (error `$2`, at `$3`):
/// pending again.
pub(crate) const MARK_REPLY_PENDING: &str = "UPDATE event_listeners_replyoutbox
     SET status = 'pending', error = $2, updated_at = $3
     WHERE id = $1 AND status IN ('pending', 'sending')";

/// Reply `$1` is sent as message `$2` (at `$3`).
pub(crate) const MARK_REPLY_SENT: &str = "UPDATE event_listeners_replyoutbox
     SET status = 'sent', message_id = $2, error = NULL, updated_at = $3
     WHERE id = $1 AND status IN ('pending', 'sending')";

/// Reply `$1` cannot be sent (error `$2`, at `$3`).
pub(crate) const MARK_REPLY_FAILED: &str = "UPDATE event_listeners_replyoutbox
     SET status = 'failed', error = $2, updated_at = $3
     WHERE id = $1 AND status IN ('pending', 'sending')";

/// The dead letter of reply `$1`, refused for good with error `$2` at
/// `$3`: stage `reply`, class `permanent`, its tries (at least one).
pub(crate) const REPLY_DEAD_LETTER: &str = "INSERT INTO event_listeners_deadletter
       (listener_name, inbox_id, event_type, error, attempts, created_at, stage, error_class,
        first_failed_at, last_failed_at)
     SELECT o.listener_name, o.inbox_id, i.event_type, $2,
            CASE WHEN o.attempts > 1 THEN o.attempts ELSE 1 END, $3, 'reply', 'permanent', $3, $3
     FROM event_listeners_replyoutbox o
     JOIN event_listeners_inbox i ON i.id = o.inbox_id
     WHERE o.id = $1";

/// `(message id, raw, queue id, event id, key id)` of instance `$1`'s
/// message events stored after inbox row `$2` whose raw JSON contains `$3`
/// (a LIKE pattern), or is encrypted (and so cannot be searched): the
/// candidates for a reply's echo, checked by parsing.
pub(crate) const REPLY_ECHO_CANDIDATES: &str =
    "SELECT message_id, raw, queue_id, event_id, key_id FROM event_listeners_inbox
     WHERE instance = $1 AND id > $2 AND event_type = 'message'
       AND (key_id IS NOT NULL OR raw LIKE $3)
     ORDER BY id";

/// `cleanup` and retention: sent replies last updated before `$1`.
pub(crate) const CLEANUP_SENT_REPLIES: &str =
    "DELETE FROM event_listeners_replyoutbox WHERE status = 'sent' AND updated_at < $1";
