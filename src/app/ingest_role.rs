//! `run --role ingest`: one organization's poller in a distributed
//! deployment. It stands by until it takes the lead (`distributed::leader`),
//! then, for the term of its epoch, polls Zulip into the inbox (the
//! pipeline's Publish mode: stored and acknowledged, not dispatched),
//! publishes the outbox (`distributed::Publisher`), sends replies, and
//! renews its lease. A failed renewal, a fenced write or a fenced publish
//! ends the term at once: everything stops, the lease is released, and
//! it stands by again. Its writes carry its epoch, so a term that ended
//! can commit nothing after the next leader's epoch.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::organization::{Organization, Shared};
use super::run::RunReport;
use super::source::{intake_settings, Source};
use super::AppError;
use crate::distributed::{
    keep_lead, stand_by, wait_for_lead, DistributedError, Publisher, Topology,
};
use crate::intake::{OutboxGate, Pipeline, PipelineMode};
use crate::replies::ReplySender;
use crate::store::{Lease, Store, StoreError};

impl Organization {
    /// Leads (or stands by), stores and publishes until `token`.
    pub(super) async fn ingest(
        &self,
        store: Arc<dyn Store>,
        shared: &Shared,
        token: CancellationToken,
    ) -> Result<RunReport, AppError> {
        let d = &self.config.distributed;
        if d.amqp_url.is_none() {
            return Err(DistributedError::Setup(vec![
                "`--role ingest` needs [distributed] amqp_url".to_owned(),
            ])
            .into());
        }
        self.state.ingest.enabled.store(true, Ordering::Relaxed);
        self.state
            .ingest
            .partitions
            .store(d.partitions, Ordering::Relaxed);
        let mut report = RunReport {
            location: Some(store.location()),
            ..RunReport::default()
        };
        // The standby is not polling: /health says so (not "starting").
        self.state.set_starting(None);
        crate::systemd::notify_ready();
        loop {
            let lease =
                wait_for_lead(&store, self.name(), d.lease_seconds, &self.state, &token).await?;
            let Some(lease) = lease else {
                return Ok(report);
            };
            let term = self.term(&store, shared, lease, &token).await;
            stand_by(&self.state);
            match term {
                Ok(stored) => report.stored += stored,
                Err(AppError::Store(e @ StoreError::Fenced { .. })) => {
                    tracing::warn!(error = %e, "Demoted: another ingest leads");
                }
                Err(e) => return Err(e),
            }
            if token.is_cancelled() {
                return Ok(report);
            }
        }
    }

    /// One term of leadership: until `token`, or a demotion. The events
    /// stored in it.
    async fn term(
        &self,
        store: &Arc<dyn Store>,
        shared: &Shared,
        mut lease: Box<dyn Lease>,
        token: &CancellationToken,
    ) -> Result<u64, AppError> {
        let d = &self.config.distributed;
        let instance = self.name().to_owned();
        let epoch = lease.epoch();
        let term = token.child_token();
        let (published_through, depth) = match store.leader_row(&instance).await? {
            Some(row) => (row.published_through, row.outbox_depth),
            None => (0, 0),
        };
        let gate = Arc::new(OutboxGate::new(
            published_through + depth,
            published_through,
            d.outbox_limit,
        ));
        let publisher = Publisher {
            store: store.clone(),
            instance: instance.clone(),
            epoch,
            topology: Topology::new(&d.prefix, d.partitions),
            url: d.amqp_url.clone().ok_or_else(|| {
                DistributedError::Setup(vec!["[distributed] amqp_url".to_owned()])
            })?,
            gate: gate.clone(),
            state: self.state.clone(),
            published_through,
        };
        let publishing = {
            let term = term.clone();
            tokio::spawn(async move {
                let result = publisher.run(term.clone()).await;
                // Fenced: another ingest leads; the whole term ends.
                term.cancel();
                result
            })
        };
        if let Source::Zulip(client) = &self.source {
            let sender = ReplySender::new(
                store.clone(),
                client.clone(),
                instance.clone(),
                self.state.clone(),
                self.config.network.read_timeout,
            );
            shared.services.spawn(sender.run(term.clone()));
        }
        let pipeline = Pipeline::new(
            instance,
            PipelineMode::Publish {
                store: store.clone(),
                gate,
            },
            self.state.clone(),
        );
        let settings = intake_settings(&self.config, &shared.opts, shared.clock.clone());
        let feed = async {
            let fed = self
                .source
                .feed(&pipeline, settings, self.state.clone(), term.clone())
                .await;
            term.cancel();
            fed
        };
        let (fed, ()) = tokio::join!(feed, keep_lead(&mut lease, d.lease_seconds, &term));
        let published = publishing.await;
        lease.release().await;
        fed?;
        match published {
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(())) => {}
            Err(e) => tracing::error!(error = %e, "The publisher task failed"),
        }
        Ok(pipeline.stored_total())
    }
}
