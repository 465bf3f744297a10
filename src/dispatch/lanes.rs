//! [`Lanes`]: per-key ordering. Runs that share a key (a listener and a
//! conversation) run one after another in dispatch order; runs with
//! different keys run in parallel.
//!
//! Each run takes a [`Turn`]: it waits for the previous run of its key to
//! finish, then runs, then lets the next one go. A run that must keep its
//! order in several lanes (a message and its conversation) takes
//! [`Turns`], one in each. The map holds one entry per key with a run
//! waiting or running, so it stays as small as the work in flight.
//!
//! Places are taken in dispatch order by one caller at a time, so a run
//! only ever waits for runs entered before it, in every lane it holds: the
//! waits cannot form a cycle.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::Mutex;

use tokio::sync::oneshot;

/// Each lane's last place: its id and the signal that it is over.
type Tails<K, S> = HashMap<K, (u64, oneshot::Receiver<()>), S>;

/// The ordering of runs by key.
#[derive(Debug)]
pub(crate) struct Lanes<K, S = RandomState> {
    tails: Mutex<Tails<K, S>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl<K, S: Default> Default for Lanes<K, S> {
    fn default() -> Self {
        Lanes {
            tails: Mutex::new(HashMap::default()),
            next_id: Default::default(),
        }
    }
}

/// Lanes keyed by a 64-bit digest of the real key ([`lane_digest`]): the
/// dispatcher's, where a run's key (a listener and a conversation, whose
/// topic is a string) would otherwise be cloned and hashed twice per run.
/// Two keys with one digest share a lane: their runs take turns, which
/// costs parallelism, never order (each still waits only for runs entered
/// before it).
pub(crate) type DigestLanes = Lanes<u64, BuildHasherDefault<Digested>>;

/// The lane of `listener`'s runs of events whose ordering key hashed to
/// `key` (the key hashed once per event, the name once per run).
pub(crate) fn lane_digest(listener: &str, key: u64) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    listener.hash(&mut h);
    key.hash(&mut h);
    h.finish()
}

/// A key's 64-bit hash, for [`lane_digest`].
pub(crate) fn key_digest<K: Hash>(key: &K) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// The hasher of [`DigestLanes`]' map: its keys are digests already.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Digested(u64);

impl Hasher for Digested {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; anything else still hashes.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A place in a lane: wait for it, run, then drop it (or call `done`).
#[derive(Debug)]
pub(crate) struct Turn<K: Hash + Eq> {
    key: K,
    id: u64,
    previous: Option<oneshot::Receiver<()>>,
    done: Option<oneshot::Sender<()>>,
}

impl<K: Hash + Eq + Clone, S: BuildHasher> Lanes<K, S> {
    /// Takes the next place in the lane of `key` (call in dispatch order).
    #[cfg(test)]
    pub(crate) fn enter(&self, key: K) -> Turn<K> {
        let mut tails = self.tails.lock().unwrap_or_else(|p| p.into_inner());
        self.enter_locked(&mut tails, key)
    }

    /// [`Lanes::enter`] with the map already locked.
    fn enter_locked(&self, tails: &mut Tails<K, S>, key: K) -> Turn<K> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let previous = tails.insert(key.clone(), (id, rx)).map(|(_, rx)| rx);
        Turn {
            key,
            id,
            previous,
            done: Some(tx),
        }
    }

    /// Ends a turn: the next run of the key may start, and an idle lane is
    /// forgotten.
    #[cfg(test)]
    pub(crate) fn leave(&self, turn: Turn<K>) {
        let mut tails = self.tails.lock().unwrap_or_else(|p| p.into_inner());
        Self::leave_locked(&mut tails, turn);
    }

    /// [`Lanes::leave`] with the map already locked.
    fn leave_locked(tails: &mut Tails<K, S>, mut turn: Turn<K>) {
        if let Some(tx) = turn.done.take() {
            let _ = tx.send(());
        }
        if tails.get(&turn.key).is_some_and(|(id, _)| *id == turn.id) {
            tails.remove(&turn.key);
        }
    }

    /// Takes the next place in the lane of each of `keys` (repeats count
    /// once).
    #[cfg(test)]
    pub(crate) fn enter_all(&self, keys: impl IntoIterator<Item = K>) -> Turns<K> {
        let mut all = self.enter_each(std::iter::once(keys));
        all.pop().unwrap_or(Turns(Vec::new()))
    }

    /// [`Lanes::enter_all`] for several runs at once, in order, under one
    /// lock: an event's runs take their places together (one lock per
    /// event, not per run).
    pub(crate) fn enter_each<I: IntoIterator<Item = K>>(
        &self,
        runs: impl IntoIterator<Item = I>,
    ) -> Vec<Turns<K>> {
        let mut tails = self.tails.lock().unwrap_or_else(|p| p.into_inner());
        runs.into_iter()
            .map(|keys| {
                let mut turns: Vec<Turn<K>> = Vec::with_capacity(1);
                for key in keys {
                    // A run never waits for itself: a key it holds already
                    // counts once.
                    if !turns.iter().any(|t| t.key == key) {
                        let turn = self.enter_locked(&mut tails, key);
                        turns.push(turn);
                    }
                }
                Turns(turns)
            })
            .collect()
    }

    /// Ends every turn of `turns`.
    pub(crate) fn leave_all(&self, turns: Turns<K>) {
        let mut tails = self.tails.lock().unwrap_or_else(|p| p.into_inner());
        for turn in turns.0 {
            Self::leave_locked(&mut tails, turn);
        }
    }

    /// Keys with a run waiting or running.
    #[cfg(test)]
    pub(crate) fn active(&self) -> usize {
        self.tails.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl<K: Hash + Eq> Turn<K> {
    /// Waits until every earlier run of the key has finished.
    pub(crate) async fn wait(&mut self) {
        if let Some(rx) = self.previous.take() {
            // An error means the previous turn was dropped without `leave`
            // (its task panicked or was cancelled): it is over either way.
            let _ = rx.await;
        }
    }
}

/// Places in several lanes, taken together by one run.
#[derive(Debug)]
pub(crate) struct Turns<K: Hash + Eq>(Vec<Turn<K>>);

impl<K: Hash + Eq> Turns<K> {
    /// Waits until every earlier run of each key has finished.
    pub(crate) async fn wait(&mut self) {
        for turn in &mut self.0 {
            turn.wait().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn runs_of_one_key_keep_their_order_and_other_keys_overtake() {
        let lanes: Arc<Lanes<&'static str>> = Arc::default();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        // "a" runs are slow and then fast; "b" is fast: b finishes before a's second.
        for (key, n, ms) in [("a", 1, 50), ("a", 2, 1), ("b", 1, 1), ("a", 3, 1)] {
            let mut turn = lanes.enter(key);
            let lanes = lanes.clone();
            let log = log.clone();
            handles.push(tokio::spawn(async move {
                turn.wait().await;
                tokio::time::sleep(Duration::from_millis(ms)).await;
                log.lock().unwrap().push(format!("{key}{n}"));
                lanes.leave(turn);
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let log = log.lock().unwrap().clone();
        assert_eq!(log, vec!["b1", "a1", "a2", "a3"]);
        assert_eq!(lanes.active(), 0, "idle lanes are forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_in_two_lanes_waits_for_both_and_holds_both() {
        let lanes: Arc<Lanes<&'static str>> = Arc::default();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        // "m" is slow in lanes a and x; "e" (lane x only) must wait for it;
        // "b" (lane a only) entered after "m" waits too; "c" overtakes.
        for (name, keys, ms) in [
            ("m", vec!["a", "x", "a"], 50),
            ("e", vec!["x"], 1),
            ("b", vec!["a"], 5),
            ("c", vec!["c"], 1),
        ] {
            let mut turns = lanes.enter_all(keys);
            let lanes = lanes.clone();
            let log = log.clone();
            handles.push(tokio::spawn(async move {
                turns.wait().await;
                tokio::time::sleep(Duration::from_millis(ms)).await;
                log.lock().unwrap().push(name);
                lanes.leave_all(turns);
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let log = log.lock().unwrap().clone();
        assert_eq!(log, vec!["c", "m", "e", "b"]);
        assert_eq!(lanes.active(), 0);
    }

    #[test]
    fn digests_tell_listeners_and_keys_apart_and_digest_lanes_order_runs() {
        let key = key_digest(&("general", "topic"));
        let other = key_digest(&("general", "other topic"));
        assert_ne!(lane_digest("a", key), lane_digest("b", key));
        assert_ne!(lane_digest("a", key), lane_digest("a", other));
        assert_eq!(lane_digest("a", key), lane_digest("a", key));
        let lanes = DigestLanes::default();
        let lane = lane_digest("a", key);
        let first = lanes.enter(lane);
        let mut second = lanes.enter(lane);
        let mut apart = lanes.enter(lane_digest("b", key));
        assert!(second.previous.is_some(), "the same lane waits");
        assert!(apart.previous.is_none(), "another lane does not");
        lanes.leave(first);
        assert!(second.previous.take().unwrap().try_recv().is_ok());
        lanes.leave(second);
        apart.previous.take();
        lanes.leave(apart);
        assert_eq!(lanes.active(), 0);
    }

    #[test]
    fn runs_entered_together_queue_in_order_and_a_repeated_key_counts_once() {
        let lanes: Lanes<&'static str> = Lanes::default();
        // One event's three runs: "a" twice in the first run, then "a" and
        // "b" in the second, "c" alone in the third.
        let mut turns = lanes.enter_each([vec!["a", "a"], vec!["a", "b"], vec!["c"]]);
        assert_eq!(turns.len(), 3);
        assert_eq!(turns[0].0.len(), 1, "a key repeated in one run is one turn");
        assert!(
            turns[0].0[0].previous.is_none(),
            "the first run does not wait for itself"
        );
        assert!(
            turns[1].0[0].previous.is_some(),
            "the second waits in lane a"
        );
        assert!(turns[1].0[1].previous.is_none(), "lane b is free");
        assert!(turns[2].0[0].previous.is_none(), "lane c is free");
        let third = turns.pop().unwrap();
        let mut second = turns.pop().unwrap();
        let first = turns.pop().unwrap();
        lanes.leave_all(first);
        assert!(
            second.0[0].previous.take().unwrap().try_recv().is_ok(),
            "the first run's end lets the second go"
        );
        lanes.leave_all(second);
        lanes.leave_all(third);
        assert_eq!(lanes.active(), 0);
    }

    #[tokio::test]
    async fn a_dropped_turn_does_not_block_its_successor() {
        let lanes: Lanes<u8> = Lanes::default();
        let first = lanes.enter(1);
        let mut second = lanes.enter(1);
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), second.wait())
            .await
            .unwrap();
        lanes.leave(second);
    }
}
