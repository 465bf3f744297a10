//! The backfill: after a lost queue (or on a first start asked to reach
//! back), the messages the new queue cannot deliver, fetched with
//! `GET /messages` page by page and fed through the pipeline as backfilled
//! message events, de-duplicated by message id in the inbox.

use tokio_util::sync::CancellationToken;

use super::poller::{sleep_or_cancel, stopped_by, Intake, IntakeError};
use crate::backoff::Backoff;
use crate::event::Event;
use crate::store::{Cursor, Origin};
use crate::zulip::ErrorAction;

/// Messages per `GET /messages` page when backfilling (Zulip recommends ≤ 1000).
const BACKFILL_PAGE: u32 = 1000;

impl Intake<'_> {
    /// Fetches the messages after `from` with `GET /messages` and feeds them
    /// through the pipeline as backfilled message events. Returns the newest
    /// message id seen.
    pub(super) async fn backfill(
        &self,
        from: i64,
        cursor: &Cursor,
        token: &CancellationToken,
    ) -> Result<Option<i64>, IntakeError> {
        let reg = &self.settings.register;
        let mut narrows = vec![reg.narrow.clone()];
        if reg.all_public_streams && reg.narrow.is_empty() {
            narrows.push(vec![("channels".to_owned(), "public".to_owned())]);
        }
        let mut newest = None;
        let mut total = 0u64;
        for narrow in &narrows {
            let mut anchor = from;
            let mut backoff = Backoff::new(self.settings.backoff_base, self.settings.backoff_cap);
            loop {
                let page = tokio::select! {
                    r = self.client.messages_after(anchor, BACKFILL_PAGE, narrow, reg.apply_markdown) => r,
                    _ = token.cancelled() => return Ok(newest),
                };
                let page = match page {
                    Ok(p) => p,
                    Err(e) if e.is_auth() => return Err(IntakeError::Auth(e)),
                    Err(e) => {
                        let d = match e.action() {
                            ErrorAction::Wait(d) => d,
                            ErrorAction::Stop => {
                                tracing::error!(error = %e, "Backfill refused by Zulip; messages in the gap are not recovered");
                                break;
                            }
                            _ => backoff.next_delay(),
                        };
                        if sleep_or_cancel(d, token).await {
                            return Ok(newest);
                        }
                        continue;
                    }
                };
                let mut events = Vec::with_capacity(page.messages.len());
                for m in &page.messages {
                    match Event::backfilled_message(m) {
                        Ok(e) => events.push(e),
                        Err(err) => {
                            tracing::warn!(error = %err, "Skipping a malformed backfilled message")
                        }
                    }
                }
                let last = events.iter().filter_map(Event::message_id).max();
                let mut c = cursor.clone();
                c.last_message_id = c.last_message_id.max(last);
                let n = events.len() as u64;
                match self
                    .pipeline
                    .accept(&Origin::Backfill, events, Some(&c), token)
                    .await
                {
                    Ok(r) => total += r.stored as u64,
                    Err(e) => return stopped_by(e).map_or(Ok(newest), Err),
                }
                newest = newest.max(last);
                match last {
                    Some(l) if !page.found_newest && n > 0 => anchor = l,
                    _ => break,
                }
            }
        }
        self.state.metrics.backfilled_messages.inc_by(total);
        tracing::info!(
            after_message_id = from,
            backfilled = total,
            "Backfilled missed messages; other event types in the gap cannot be recovered"
        );
        Ok(newest)
    }
}
