//! Committing one `GET /events` response as it arrives: each chunk the
//! [`EventsStream`] hands out is committed, and so acknowledged by the
//! cursor it moves, while the next chunk is read from the network. A
//! backlog of any size is held a chunk or two at a time, and a body that
//! fails half-way leaves its committed chunks committed: the next poll
//! asks again from the cursor. Each chunk is sorted first (`sift`): its
//! events, each id once, and what goes to quarantine, committed together.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;

use super::flight::{Committer, InFlight, Outgoing};
use super::inbox::{AcceptReport, PipelineError};
use super::poller::{stopped_by, Intake, IntakeError, PageEnd};
use super::sift::{self, Sorted};
use crate::state::now_ms;
use crate::store::{Cursor, Origin};
use crate::zulip::{Chunk, EventsStream, ZulipError};

/// What one read of the body gave.
enum Read {
    Chunk(Chunk),
    End,
    Failed(ZulipError),
    Cancelled,
}

impl Intake<'_> {
    /// Commits the events of `page`, polled from `current`'s queue, chunk
    /// by chunk as they arrive. Returns the cursor committed last and how
    /// it ended.
    ///
    /// Memory stays bounded by the chunks in flight (up to
    /// `Pipeline::appends_in_flight`, committing) and the next one, read
    /// and parsed meanwhile, plus the pipeline's hand-off to dispatch,
    /// whatever the size of the response; listener runs start while later
    /// chunks are read. An empty response commits nothing.
    pub(super) async fn commit_page(
        &self,
        page: &mut EventsStream,
        current: &Cursor,
        token: &CancellationToken,
    ) -> (Cursor, PageEnd) {
        let mut flight = Flight {
            origin: Origin::Queue(current.queue_id.clone()),
            landed: current.clone(),
            head: current.clone(),
            sent: VecDeque::new(),
            sender: self.pipeline.flight(),
            // Cancelled when the page stops early, for batches still in flight.
            token: token.child_token(),
        };
        let mut read = read_chunk(page, token).await;
        loop {
            let chunk = match read {
                Read::Chunk(chunk) => chunk,
                end => {
                    if let Err(stop) = self.land_all(&mut flight).await {
                        return (flight.landed, PageEnd::Stop(stop));
                    }
                    let end = match end {
                        Read::Failed(e) => PageEnd::Failed(e),
                        Read::Cancelled => PageEnd::Stop(Ok(())),
                        Read::End | Read::Chunk(_) => PageEnd::Complete,
                    };
                    return (flight.landed, end);
                }
            };
            let mut sorted = sift::sort(chunk, &flight.head);
            if sorted.has_suspects() {
                // Their stored copies are read: what is in flight goes in first.
                if let Err(stop) = self.land_all(&mut flight).await {
                    return (flight.landed, PageEnd::Stop(stop));
                }
            }
            let (store, instance) = (self.pipeline.store(), self.pipeline.instance());
            sift::settle_repeats(&mut sorted, store, instance, &flight.origin).await;
            let Sorted {
                events,
                quarantined,
                next,
                ..
            } = sorted;
            if next == flight.head && quarantined.is_empty() {
                read = read_chunk(page, token).await;
                continue;
            }
            let Some((depth, committer)) = flight.sender.clone() else {
                // One at a time: the next chunk is read while this one commits.
                let (result, after) = tokio::join!(
                    self.pipeline.accept_page(
                        &flight.origin,
                        events,
                        &quarantined,
                        Some(&next),
                        token
                    ),
                    read_chunk(page, token)
                );
                read = after;
                if let Err(stop) = self.noted(result) {
                    return (flight.landed, PageEnd::Stop(stop));
                }
                flight.landed = next.clone();
                flight.head = next;
                continue;
            };
            if flight.sent.len() >= depth {
                if let Err(stop) = self.land_first(&mut flight).await {
                    return (flight.landed, PageEnd::Stop(stop));
                }
            }
            // The batch before, if still in flight: where it leaves the
            // cursor, and word of its cursor write.
            let after = flight
                .sent
                .back()
                .map(|last| (flight.head.clone(), last.written.clone()));
            let outgoing = Outgoing {
                events,
                quarantined,
                next: next.clone(),
            };
            let sent =
                self.pipeline
                    .send(committer, &flight.origin, outgoing, after, &flight.token);
            flight.sent.push_back(sent);
            flight.head = next;
            read = read_chunk(page, token).await;
        }
    }

    /// Lands the oldest batch in flight (see `Pipeline::land`). On an
    /// error, what is still in flight is stopped and waited for first.
    async fn land_first(&self, flight: &mut Flight) -> Result<(), Result<(), IntakeError>> {
        let Some(first) = flight.sent.pop_front() else {
            return Ok(());
        };
        let next = first.next.clone();
        let result = self
            .pipeline
            .land(&flight.origin, first, &flight.token)
            .await;
        if let Err(stop) = self.noted(result) {
            flight.token.cancel();
            // Each batch left commits only if the one before did: waited
            // for, so that nothing of this page is still writing when it
            // returns. What committed is dispatched at the next start.
            while let Some(rest) = flight.sent.pop_front() {
                let _ = rest.task.await;
            }
            return Err(stop);
        }
        flight.landed = next;
        Ok(())
    }

    /// Lands every batch in flight, in order.
    async fn land_all(&self, flight: &mut Flight) -> Result<(), Result<(), IntakeError>> {
        while !flight.sent.is_empty() {
            self.land_first(flight).await?;
        }
        Ok(())
    }

    /// Notes an accepted batch; on an error, how the page stops.
    fn noted(
        &self,
        result: Result<AcceptReport, PipelineError>,
    ) -> Result<(), Result<(), IntakeError>> {
        match result {
            Ok(r) => {
                if r.stored > 0 {
                    self.state
                        .intake
                        .last_event_ms
                        .store(now_ms(), Ordering::Relaxed);
                }
                Ok(())
            }
            Err(e) => Err(stopped_by(e).map_or(Ok(()), Err)),
        }
    }
}

/// The batches of one page in flight, and where the cursor stands.
struct Flight {
    origin: Origin,
    /// The cursor of the last batch landed (committed and handed over).
    landed: Cursor,
    /// The cursor after every batch sent.
    head: Cursor,
    /// The batches sent, oldest first.
    sent: VecDeque<InFlight>,
    /// How many may be in flight at once, and what commits them; none:
    /// one at a time, by `Pipeline::accept_page`.
    sender: Option<(usize, Committer)>,
    /// Theirs: cancelled when the page stops early.
    token: CancellationToken,
}

/// The next chunk of `page`, unless shutdown comes first.
async fn read_chunk(page: &mut EventsStream, token: &CancellationToken) -> Read {
    tokio::select! {
        read = page.next_chunk() => match read {
            Ok(Some(chunk)) => Read::Chunk(chunk),
            Ok(None) => Read::End,
            Err(e) => Read::Failed(e),
        },
        _ = token.cancelled() => Read::Cancelled,
    }
}
