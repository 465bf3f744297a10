//! [`both_backends!`]: one test body, run as a SQLite test and as a
//! PostgreSQL test.

/// Generates two tests from `body`, an `async fn(Backend)`: `$sqlite` runs
/// it on SQLite and `$postgres` on PostgreSQL. Both names are given (and
/// not derived from the body's) so that test names stay as they were. An
/// optional leading attribute replaces `#[tokio::test]` on both.
///
/// ```ignore
/// both_backends!(replay_command_reruns_dead_letters =>
///     replay_command_reruns_dead_letters_on_sqlite,
///     replay_command_reruns_dead_letters_on_postgres);
/// ```
macro_rules! both_backends {
    (#[$test:meta] $body:path => $sqlite:ident, $postgres:ident $(,)?) => {
        #[$test]
        async fn $sqlite() {
            $body($crate::support::Backend::Sqlite).await;
        }

        #[$test]
        async fn $postgres() {
            $body($crate::support::Backend::Postgres).await;
        }
    };
    ($body:path => $sqlite:ident, $postgres:ident $(,)?) => {
        $crate::support::both_backends!(#[tokio::test] $body => $sqlite, $postgres);
    };
}

pub(crate) use both_backends;
