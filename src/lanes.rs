//! The threads that serve the gateway's HTTP connections ("lanes"): each runs a single-threaded
//! tokio runtime, and a connection lives on one lane from accept to close, with every task it
//! spawns and every upstream connection it opens (`upstream_client` keeps a pool per lane).
//!
//! Why not the process's multi-threaded runtime: on it a call's tasks (the client's connection,
//! the upstream connection, the reply) woke each other across workers, and a worker that found a
//! second task ready woke an idle one to steal it, which usually found nothing and parked again.
//! Measured with the bench's soak on get_task (2 cores, alternated with the build before, one
//! sitting): at c=64 the gateway spent 73–90 µs of CPU per call on two workers and 58–65 µs on
//! two lanes; at c=1, 147–162 µs and 125–137 µs (README → Performance, round 6).
//!
//! What lanes give up is work stealing: a busy lane's connections wait for it while another lane
//! may idle. Connections are spread by count (`Lanes::spawn`), and a call holds its lane for tens
//! of microseconds (a full `tools/list` for about 150) between waits on the API, so no lane stays
//! busy for long.
//!
//! The accept loop, the Redis replica link, the metrics listener and the embedded sandbox stay
//! on the process's runtime; lanes only serve connections.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

thread_local! {
    /// The lane this thread is, if it is one.
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The lane the calling thread is (0-based), or None on any other thread.
pub fn current() -> Option<usize> {
    CURRENT.with(Cell::get)
}

/// Running lanes; `stop` ends them.
pub struct Lanes {
    lanes: Vec<Lane>,
    /// Whose turn a tie is.
    turn: AtomicUsize,
}

struct Lane {
    runtime: tokio::runtime::Handle,
    /// Work handed to this lane and not finished: where the next connection goes.
    open: Arc<AtomicUsize>,
    stop: tokio::sync::oneshot::Sender<()>,
    stopped: tokio::sync::oneshot::Receiver<()>,
}

impl Lanes {
    /// Starts `count` lanes (at least one), threads named `lane-0`, `lane-1`, …
    pub fn start(count: usize) -> std::io::Result<Lanes> {
        let mut lanes = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let (stop, stop_asked) = tokio::sync::oneshot::channel::<()>();
            let (said_stopped, stopped) = tokio::sync::oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("lane-{index}"))
                .spawn(move || {
                    CURRENT.with(|lane| lane.set(Some(index)));
                    let _ = runtime.block_on(stop_asked);
                    // Whatever is left (tasks a connection spawned) is dropped, not awaited:
                    // `serve` has already waited for the connections themselves.
                    runtime.shutdown_background();
                    let _ = said_stopped.send(());
                })?;
            lanes.push(Lane {
                runtime: handle,
                open: Arc::default(),
                stop,
                stopped,
            });
        }
        Ok(Lanes {
            lanes,
            turn: AtomicUsize::new(0),
        })
    }

    pub fn count(&self) -> usize {
        self.lanes.len()
    }

    /// Tasks alive on all lanes.
    #[cfg(test)]
    pub(crate) fn alive_tasks(&self) -> usize {
        self.lanes
            .iter()
            .map(|lane| lane.runtime.metrics().num_alive_tasks())
            .sum()
    }

    /// Runs the future `make` returns on the lane with the least unfinished work; a tie goes to
    /// the lanes in turn. `make` runs here, inside that lane's runtime context, so an I/O object
    /// it makes (a `TcpStream::from_std`) registers with that lane's reactor; when it returns
    /// None, nothing is spawned.
    ///
    /// Why ties take turns: a legacy SSE client opens its stream and then its POST connection.
    /// With ties to the first lane, every stream went to one lane and every POST (where the
    /// calls run) to the other; in turn, both kinds alternate.
    ///
    /// Why `make` and not a future: building hyper's connection here keeps the spawned future
    /// what it was before lanes. Built on the lane, the task also held what built it (the socket,
    /// the builder, the service), and an idle SSE session cost 1.7 KiB more.
    pub fn spawn<F>(&self, make: impl FnOnce() -> Option<F>)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // One reading of the counts: lanes finish work meanwhile, and a second reading could
        // find no lane at the minimum the first one saw.
        let open: Vec<usize> = self
            .lanes
            .iter()
            .map(|lane| lane.open.load(Ordering::Relaxed))
            .collect();
        let lane = &self.lanes[least_busy(&open, &self.turn)];
        let work = {
            let _inside = lane.runtime.enter();
            make()
        };
        let Some(work) = work else {
            return;
        };
        lane.runtime.spawn(Counted {
            work,
            _open: Unfinished::count(&lane.open),
        });
    }

    /// Ends every lane, dropping any task still on it, and returns once their threads are done.
    pub async fn stop(self) {
        let mut stopped = Vec::with_capacity(self.lanes.len());
        for lane in self.lanes {
            let _ = lane.stop.send(());
            stopped.push(lane.stopped);
        }
        for lane in stopped {
            let _ = lane.await;
        }
    }
}

/// The index of a lane with the fewest of `open`; among several, the next in `turn`.
fn least_busy(open: &[usize], turn: &AtomicUsize) -> usize {
    let least = open.iter().copied().min().unwrap_or(0);
    let tied = open.iter().filter(|&&n| n == least).count();
    let nth = if tied > 1 {
        turn.fetch_add(1, Ordering::Relaxed) % tied
    } else {
        0
    };
    open.iter()
        .enumerate()
        .filter(|&(_, &n)| n == least)
        .nth(nth)
        .map_or(0, |(index, _)| index)
}

pin_project_lite::pin_project! {
    /// `work`, counted as its lane's until it ends or is dropped.
    struct Counted<F> {
        #[pin]
        work: F,
        _open: Unfinished,
    }
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        self.project().work.poll(cx)
    }
}

/// One unit of a lane's unfinished work, given back when dropped (the work ended or was dropped).
struct Unfinished(Arc<AtomicUsize>);

impl Unfinished {
    fn count(open: &Arc<AtomicUsize>) -> Unfinished {
        open.fetch_add(1, Ordering::Relaxed);
        Unfinished(open.clone())
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Where each piece of work ran: its lane and its thread's name.
    async fn place_of(
        lanes: &Lanes,
        keep_open: tokio::sync::watch::Receiver<()>,
    ) -> (usize, String) {
        let (tell, told) = tokio::sync::oneshot::channel();
        lanes.spawn(|| {
            Some(async move {
                let thread = std::thread::current().name().map(str::to_string);
                let _ = tell.send((current().expect("on a lane"), thread.unwrap_or_default()));
                let mut keep_open = keep_open;
                let _ = keep_open.changed().await;
            })
        });
        told.await.expect("the work ran")
    }

    #[tokio::test]
    async fn work_goes_to_the_least_busy_lane_and_runs_on_its_thread() {
        let lanes = Lanes::start(2).unwrap();
        assert_eq!(lanes.count(), 2);
        assert_eq!(current(), None, "the test's own thread is no lane");
        let (_held, held_open) = tokio::sync::watch::channel(());
        let (release, released_later) = tokio::sync::watch::channel(());
        let first = place_of(&lanes, held_open.clone()).await;
        let second = place_of(&lanes, released_later.clone()).await;
        assert_eq!(
            (first.0, second.0),
            (0, 1),
            "the second goes where nothing runs"
        );
        for (lane, thread) in [&first, &second] {
            assert_eq!(thread, &format!("lane-{lane}"));
        }
        // One each: the first tie went to lane 0, so this one goes to lane 1.
        let third = place_of(&lanes, released_later).await;
        assert_eq!(third.0, 1, "ties take turns");
        // Lane 1's two end: were they still counted, lane 0 (one) would win.
        drop(release);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let fourth = place_of(&lanes, held_open).await;
        assert_eq!(fourth.0, 1, "finished work is no longer counted");
        tokio::time::timeout(Duration::from_secs(5), lanes.stop())
            .await
            .expect("stop returns though a task is still waiting on a lane");
    }

    #[test]
    fn the_least_busy_lane_wins_and_ties_take_turns() {
        let turn = AtomicUsize::new(0);
        assert_eq!(least_busy(&[3, 1, 2], &turn), 1);
        assert_eq!(turn.load(Ordering::Relaxed), 0, "no tie, no turn taken");
        assert_eq!(least_busy(&[2, 1, 1], &turn), 1);
        assert_eq!(least_busy(&[2, 1, 1], &turn), 2);
        assert_eq!(least_busy(&[2, 1, 1], &turn), 1);
        assert_eq!(least_busy(&[0, 0, 0], &turn), 0, "the fourth tie: 3 % 3");
    }

    #[test]
    fn zero_lanes_means_one_and_declined_work_is_not_counted() {
        let lanes = Lanes::start(0).unwrap();
        assert_eq!(lanes.count(), 1);
        lanes.spawn(|| None::<std::future::Ready<()>>);
        assert_eq!(lanes.lanes[0].open.load(Ordering::Relaxed), 0);
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(lanes.stop());
    }
}
