//! `run --role worker`: one organization's listener runs in a distributed
//! deployment. The recorder, dispatcher and controls are the single
//! process's ([`Organization::engine`]), with a recorder that writes no
//! watermark; there is no intake, no `recover` (the broker's redelivery
//! brings back what was not recorded) and no reply sender (the ingest
//! leader sends replies). The partitions come from the membership
//! heartbeat (`distributed::balance`); the consumer loop is
//! [`Worker`](crate::distributed::Worker).

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::drain::finish;
use super::engine::Engine;
use super::organization::{Organization, Shared};
use super::run::RunReport;
use super::AppError;
use crate::dispatch::Progress;
use crate::distributed::{
    balance, leave, worker_id, DistributedError, Topology, Worker, WorkerSettings,
};
use crate::store::Store;

impl Organization {
    /// Consumes, runs and records until `token`.
    pub(super) async fn work(
        &self,
        store: Arc<dyn Store>,
        shared: &Shared,
        token: CancellationToken,
    ) -> Result<RunReport, AppError> {
        let config = &self.config;
        let dist = &config.distributed;
        let Some(url) = &dist.amqp_url else {
            return Err(DistributedError::Setup(vec![
                "`--role worker` needs [distributed] amqp_url".to_owned(),
            ])
            .into());
        };
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let progress = Arc::new(Progress::with_completions(done_tx));
        let Engine {
            dispatcher,
            recorder,
            give_up,
        } = self.engine(&store, shared, &token, progress, true).await?;
        let me = worker_id();
        let instance = self.name().to_owned();
        let (share_tx, share_rx) = watch::channel(Vec::new());
        let heartbeat = CancellationToken::new();
        let balancer = tokio::spawn(balance(
            store.clone(),
            instance.clone(),
            me.clone(),
            dist.partitions,
            dist.lease_seconds,
            share_tx,
            heartbeat.clone(),
        ));
        let prefetch = dist.prefetch.unwrap_or_else(|| {
            u16::try_from(config.performance.max_concurrent_handlers).unwrap_or(u16::MAX)
        });
        let settings = WorkerSettings {
            url: url.expose().to_owned(),
            shown_url: url.to_string(),
            topology: Topology::new(&dist.prefix, dist.partitions),
            org: instance.clone(),
            prefetch,
        };
        let consumed = Arc::new(Mutex::new(Vec::new()));
        *self
            .state
            .worker_partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(consumed.clone());
        self.state.set_starting(None);
        tracing::info!(worker = %me, partitions = dist.partitions, prefetch, "Worker started");
        let mut worker = Worker::new(
            settings,
            store.clone(),
            dispatcher,
            done_rx,
            share_rx,
            self.state.metrics.worker.clone(),
            consumed,
        );
        worker.run(&token).await;
        let timeout = config.performance.handler_timeout;
        let recorded = worker
            .stop(|d| finish(Some(d), recorder, give_up, timeout))
            .await
            .unwrap_or_default();
        heartbeat.cancel();
        let _ = balancer.await;
        leave(&store, &instance, &me).await;
        Ok(RunReport {
            location: Some(store.location()),
            recorder: recorded,
            ..RunReport::default()
        })
    }
}
