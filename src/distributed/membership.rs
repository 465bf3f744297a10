//! Balancing partitions between workers through PostgreSQL. A quorum
//! queue with single-active-consumer makes the FIRST subscriber active,
//! so a worker that subscribed to every partition would take them all.
//! Instead each worker heartbeats its row of `event_listeners_workers`
//! every `lease_seconds / 3`; the live workers (a heartbeat within
//! `lease_seconds`), sorted by id, split the partitions: worker `i` of `n`
//! consumes the partitions `p` with `p % n == i`. Each heartbeat
//! re-evaluates the split, so a dead worker's partitions are taken by the
//! others within `lease_seconds`. A worker that cannot heartbeat for a
//! whole lease gives up its partitions (the others will think it dead).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// This process's worker id: host, pid and a random part, so a restarted
/// worker is a new member.
pub(crate) fn worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let salt: u32 = rand::random();
    format!("{host}-{}-{salt:08x}", std::process::id())
}

/// The partitions worker `me` consumes among the sorted `live` workers.
pub(crate) fn share(live: &[String], me: &str, partitions: u32) -> Vec<u32> {
    let Some(i) = live.iter().position(|w| w == me) else {
        return Vec::new();
    };
    let n = live.len() as u32;
    (0..partitions).filter(|p| p % n == i as u32).collect()
}

/// Heartbeats `me` of `instance` until `token`, publishing this worker's
/// share of the partitions on `tx` after each heartbeat; at the end,
/// removes its row so the others take over at their next heartbeat.
pub(crate) async fn balance(
    store: Arc<dyn Store>,
    instance: String,
    me: String,
    partitions: u32,
    lease: Duration,
    tx: watch::Sender<Vec<u32>>,
    token: CancellationToken,
) {
    let every = (lease / 3).max(Duration::from_millis(100));
    let mut last_ok = Instant::now();
    loop {
        match store.worker_heartbeat(&instance, &me, lease).await {
            Ok(live) => {
                last_ok = Instant::now();
                let mine = share(&live, &me, partitions);
                tx.send_if_modified(|cur| {
                    let changed = *cur != mine;
                    if changed {
                        tracing::info!(workers = live.len(), partitions = ?mine, "This worker's share of the partitions");
                        cur.clone_from(&mine);
                    }
                    changed
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "Worker heartbeat failed");
                if last_ok.elapsed() > lease {
                    tx.send_if_modified(|cur| {
                        let had = !cur.is_empty();
                        cur.clear();
                        had
                    });
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = token.cancelled() => break,
        }
    }
}

/// Removes worker `me`'s row (at shutdown, once its partitions are closed).
pub(crate) async fn leave(store: &Arc<dyn Store>, instance: &str, me: &str) {
    if let Err(e) = store.worker_leave(instance, me).await {
        tracing::warn!(error = %e, "Could not remove this worker from the membership table; the others take its partitions after the lease");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_workers_split_the_partitions_and_together_cover_them() {
        let live: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(share(&live, "a", 8), vec![0, 3, 6]);
        assert_eq!(share(&live, "b", 8), vec![1, 4, 7]);
        assert_eq!(share(&live, "c", 8), vec![2, 5]);
        assert!(share(&live, "d", 8).is_empty(), "not a live member");
    }
}
