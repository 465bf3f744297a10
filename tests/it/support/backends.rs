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
///
/// The `mod` form takes a list of bodies of the calling module and
/// generates `sqlite::NAME` and `postgres::NAME` for each (a suite whose
/// every test runs on both):
///
/// ```ignore
/// both_backends!(mod: append_stores_each_event_once, the_raw_json_comes_back);
/// ```
macro_rules! both_backends {
    (mod: $($body:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $body() {
                    super::$body($crate::support::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $body() {
                    super::$body($crate::support::Backend::Postgres).await;
                }
            )*
        }
    };
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
