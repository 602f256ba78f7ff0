//! The simulated latency's timer: it holds a Graph call until the time asked, not the
//! next tick after it. tokio's timer wheel rounds every deadline up to its 1 ms tick
//! and fires on the driver's next turn, so a call held "50 ms" with `tokio::time::sleep`
//! was held 51.2 ms on average: an error of the instrument that a benchmark of the
//! sweep then counted against the sweep. One thread per sandbox (started on the first
//! call with a latency) keeps the deadlines in a heap and sleeps on a channel with a
//! timeout, which the kernel honours to within tens of microseconds.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::OnceLock;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Instant;

use tokio::sync::oneshot;

struct Due {
    at: Instant,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    /// Reversed, so that the heap's top is the earliest deadline (equal deadlines wake
    /// in the same turn).
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.cmp(&self.at)
    }
}

/// Wakes each waiter at its deadline, not before. Dropping it ends its thread.
#[derive(Default)]
pub(crate) struct Timer {
    tx: OnceLock<mpsc::Sender<Due>>,
}

impl Timer {
    /// Returns at `at` or just after it (never before): `true` when the timer's thread
    /// woke it, `false` when the deadline had passed already or tokio's timer stood in.
    pub(crate) async fn until(&self, at: Instant) -> bool {
        if at <= Instant::now() {
            return false;
        }
        let (wake, woken) = oneshot::channel();
        let sent = self.tx.get_or_init(spawn).send(Due { at, wake }).is_ok();
        if sent && woken.await.is_ok() {
            return true;
        }
        // The timer's thread could not be started or is gone: fall back to tokio's
        // timer, which errs late, never early.
        tokio::time::sleep_until(at.into()).await;
        false
    }
}

fn spawn() -> mpsc::Sender<Due> {
    let (tx, rx) = mpsc::channel::<Due>();
    // If the thread cannot start, `rx` is dropped with the closure and every send fails:
    // `until` then falls back to tokio's timer.
    let _ = std::thread::Builder::new()
        .name("sandbox-latency".into())
        .spawn(move || run(&rx));
    tx
}

fn run(rx: &mpsc::Receiver<Due>) {
    let mut heap = BinaryHeap::<Due>::new();
    loop {
        let now = Instant::now();
        while heap.peek().is_some_and(|d| d.at <= now) {
            if let Some(due) = heap.pop() {
                let _ = due.wake.send(());
            }
        }
        let next = match heap.peek() {
            Some(d) => rx.recv_timeout(d.at.saturating_duration_since(now)),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(due) => heap.push(due),
            Err(RecvTimeoutError::Timeout) => {}
            // The sandbox is gone; its waiters' receivers see their senders dropped.
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiters_wake_from_the_timer_thread_in_deadline_order_never_early() {
        let timer = Arc::new(Timer::default());
        let woke = Arc::new(Mutex::new(Vec::new()));
        // Handed in out of order, 5 ms apart, the first 20 ms ahead (room to hand in all).
        let start = Instant::now() + Duration::from_millis(20);
        let mut tasks = Vec::new();
        for i in [4u32, 1, 3, 0, 2] {
            let (timer, woke) = (timer.clone(), woke.clone());
            let at = start + Duration::from_millis(5 * u64::from(i));
            tasks.push(tokio::spawn(async move {
                let by_thread = timer.until(at).await;
                let now = Instant::now();
                woke.lock().unwrap().push(i);
                (at, now, by_thread)
            }));
        }
        for task in tasks {
            let (at, now, by_thread) = tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("every waiter wakes")
                .unwrap();
            assert!(by_thread, "woken by the timer's thread, not the fallback");
            assert!(now >= at, "woke {:?} before its deadline", at - now);
        }
        assert_eq!(*woke.lock().unwrap(), [0, 1, 2, 3, 4]);
        // A deadline already past returns at once.
        assert!(!timer.until(Instant::now()).await);
    }
}
