//! Every call the worker makes to the broker, bounded: a connection that
//! died without a word (a cut TCP connection, a half-open socket) never
//! answers an ack, a channel opened or closed, or a subscription, and
//! lapin does not always notice. A call past its limit fails as a
//! timed-out I/O error, which the worker treats as a lost connection.

use std::time::Duration;

/// How long one broker call (an ack, a channel opened or closed, a
/// subscription) may take before the connection counts as lost: a
/// connection that died without a word never answers.
const BROKER_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// `call`, failed as a lost connection when it takes longer than
/// [`BROKER_CALL_TIMEOUT`].
pub(crate) async fn bounded<T>(
    call: impl std::future::Future<Output = Result<T, lapin::Error>>,
) -> Result<T, lapin::Error> {
    within(
        BROKER_CALL_TIMEOUT,
        "no answer from RabbitMQ within the call timeout",
        call,
    )
    .await
}

/// `call`, failed as a timed-out I/O error saying `what` after `limit`.
pub(crate) async fn within<T>(
    limit: Duration,
    what: &'static str,
    call: impl std::future::Future<Output = Result<T, lapin::Error>>,
) -> Result<T, lapin::Error> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(lapin::Error::from(lapin::ErrorKind::IOError(
            std::io::Error::new(std::io::ErrorKind::TimedOut, what).into(),
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_call_that_never_answers_fails_as_timed_out_and_one_that_answers_passes() {
        let never = std::future::pending::<Result<(), lapin::Error>>();
        let e = bounded(never).await.expect_err("a call that never answers");
        assert!(e.to_string().contains("within the call timeout"), "{e}");
        let answered = bounded(async { Ok::<_, lapin::Error>(7) }).await;
        assert_eq!(answered.expect("an answer"), 7);
    }
}
