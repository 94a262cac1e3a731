//! The `/metrics` endpoint: this core's [`Snapshot`] of its counters, and gathering every
//! other core's through the inboxes; the counters, the snapshot type and the rendering are
//! `crate::metrics` (which knows nothing of cores).
//!
//! The scrape is answered on whichever core accepted it (there is no room to shard by). That
//! core takes its own snapshot directly and asks every other core for theirs through its inbox
//! (`handoff::Inbound::Metrics`, carrying a flume sender for the reply). The scrape is a
//! deferred reply (`Reply::later`), so the asking core keeps serving while it waits; a core
//! that has not answered within [`GATHER_TIMEOUT`] (or whose inbox is full or closed) is
//! reported missing, never waited for.

use std::time::{Duration, Instant};

use crate::{
    http::{Method, Response},
    metrics::{render, Snapshot, CONTENT_TYPE, GATHER_TIMEOUT},
    party::Reply,
};

use super::{core::Core, handoff::Inboxes, CoreStats};

/// The path served.
pub const PATH: &str = "/metrics";

/// This core's snapshot. Called from the core's own thread, never inside a room handler.
pub fn snapshot(core: &Core) -> Snapshot {
    let m = &core.metrics;
    let stats = &core.stats;
    let storage = core.storage.stats();
    Snapshot {
        core: core.id,
        connections_open: core.live_connections() as u64,
        connections_accepted: CoreStats::get(&stats.accepted),
        connections_refused: CoreStats::get(&stats.refused_at_capacity),
        websockets_open: m.websockets_open.get(),
        websockets_parked: core.ws_poller.as_ref().map_or(0, |p| p.parked() as u64),
        // The table is only borrowed inside room handlers, which never take a snapshot.
        rooms: core.rooms.try_borrow().map_or(0, |r| r.len() as u64),
        ws_messages_received: m.ws_messages_received.get(),
        ws_frames_queued: m.ws_frames_queued.get(),
        received_bytes: m.received_bytes.get(),
        sent_bytes: m.sent_bytes.get(),
        handoffs_sent: CoreStats::get(&stats.handoffs_sent),
        handoffs_received: CoreStats::get(&stats.handoffs_received),
        handoffs_refused: CoreStats::get(&stats.handoffs_refused),
        http_errors: m.http_error_counts(),
        ws_protocol_closes: m.ws_protocol_close_counts(),
        storage_records: storage.records,
        storage_fsyncs: storage.fsyncs,
        storage_failures: storage.failures,
        storage_lost_records: storage.lost_records,
        storage_degraded: storage.degraded,
    }
}

/// The answer to `method` on `target` if `target` is [`PATH`], else `None` (the caller goes on
/// to its other routes).
pub fn response(core: &Core, method: Method, target: &str) -> Option<Reply> {
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if path != PATH {
        return None;
    }
    Some(match method {
        Method::Get | Method::Head => {
            let own = snapshot(core);
            let inboxes = core.inboxes.clone();
            let cores = core.cores();
            Reply::later(async move {
                let all = gather(own, &inboxes, cores, GATHER_TIMEOUT).await;
                Response {
                    status: 200,
                    content_type: CONTENT_TYPE,
                    headers: vec![("Cache-Control".into(), "no-store".to_owned())],
                    body: render(&all).into_bytes(),
                }
            })
        }
        _ => Response::text(405, "Method not allowed")
            .header("Allow", "GET, HEAD")
            .into(),
    })
}

/// Every core's snapshot, indexed by core: `own` (this core's), and the others' as they answer
/// through their inboxes within `timeout`; `None` for a core that did not.
pub async fn gather(
    own: Snapshot,
    inboxes: &Inboxes,
    cores: usize,
    timeout: Duration,
) -> Vec<Option<Snapshot>> {
    let me = own.core;
    let mut all = vec![None; cores];
    // Room for every answer, so no answering core ever waits on this channel.
    let (tx, rx) = flume::bounded(cores);
    let mut waiting = 0usize;
    for k in (0..cores).filter(|&k| k != me) {
        if inboxes.send_metrics(k, tx.clone()) {
            waiting += 1;
        } else {
            tracing::warn!(
                core = me,
                other = k,
                "metrics: inbox full or closed, core reported missing"
            );
        }
    }
    drop(tx);
    all[me] = Some(own);
    let deadline = Instant::now() + timeout;
    while waiting > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        match monoio::time::timeout(left, rx.recv_async()).await {
            Ok(Ok(s)) => {
                waiting -= 1;
                let k = s.core;
                if let Some(slot) = all.get_mut(k) {
                    *slot = Some(s);
                }
            }
            // Every asked core dropped the request unanswered (it stopped).
            Ok(Err(_)) => break,
            Err(_) => {
                tracing::warn!(
                    core = me,
                    missing = waiting,
                    "metrics: cores did not answer within {timeout:?}, reported missing"
                );
                break;
            }
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{net::block_on, runtime::handoff::Inbound};

    fn snap(core: usize, base: u64) -> Snapshot {
        Snapshot {
            core,
            connections_open: base + 1,
            rooms: base + 3,
            ..Snapshot::default()
        }
    }

    #[test]
    fn gather_reports_a_silent_core_missing_instead_of_waiting() {
        let (inboxes, rx) = Inboxes::new(4, 4).expect("doorbells");
        let mut rx: Vec<_> = rx.into_iter().map(|inbox| inbox.rx).collect();
        // Core 3 has stopped: its request cannot even be queued.
        drop(rx.pop());
        let silent = rx.pop().expect("core 2");
        let answering = rx.pop().expect("core 1");
        let helper =
            std::thread::spawn(
                move || match answering.recv_timeout(Duration::from_secs(10)) {
                    Ok(Inbound::Metrics(reply)) => reply.send(snap(1, 5)).unwrap(),
                    other => panic!("expected a metrics request, got {other:?}"),
                },
            );
        let started = Instant::now();
        let all = block_on(gather(snap(0, 0), &inboxes, 4, Duration::from_millis(200)));
        helper.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(all, vec![Some(snap(0, 0)), Some(snap(1, 5)), None, None]);
        assert!(
            matches!(silent.try_recv(), Ok(Inbound::Metrics(_))),
            "the silent core was asked"
        );
    }
}
