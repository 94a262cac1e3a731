//! Crons: handlers run on a schedule, PartyKit's `crons` (partykit.json) and `static onCron`.
//!
//! Two kinds, both given a [`CronEvent`] (name, expression, scheduled time, and the lobby that
//! reaches any room with `party_room(..).fetch(..)`):
//! - `Server::builder().cron("*/5 * * * *", |cron| async move { ... })`: a server-level
//!   handler; the future it returns is spawned;
//! - named crons, `--cron NAME=EXPR` or `Builder::named_cron`: every party's
//!   [`Party::on_cron`](crate::party::Party::on_cron) runs with the name. The built-in `main`
//!   party posts a JSON line into its room `NAME` (see `party/main.rs`).
//!
//! Where and how often: every cron runs on **core 0** only, so a node fires each scheduled time
//! once (not once per core). Expressions have five fields (minute to day of week) or six (a
//! seconds field first), with croner's Vixie-cron semantics, evaluated in **UTC**.
//!
//! Timekeeping (what is due when) is `party::cron::Schedule`; this file is core 0's task that
//! sleeps until the next time and fires what is due.

use std::{
    panic::{self, AssertUnwindSafe},
    rc::Rc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use chrono::{DateTime, Utc};

use super::core::{spawn_guarded, Core};
use crate::{
    party::cron::{Action, CronEvent, CronJob, Schedule},
    room::Context,
};

/// The wall clock as the scheduler reads it.
fn now() -> DateTime<Utc> {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    DateTime::from_timestamp(d.as_secs() as i64, d.subsec_nanos()).unwrap_or_default()
}

/// Longest single sleep: the wall clock is looked at again at least this often, so a clock
/// that is stepped (NTP, a suspended VM) delays a cron by at most this much.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Core 0's cron task (other cores return at once): sleeps until the next time and fires what
/// is due.
pub async fn run(core: Rc<Core>) {
    let jobs = core.parties.crons().to_vec();
    if core.id != 0 || jobs.is_empty() {
        return;
    }
    let mut schedule = Schedule::new(jobs.iter().map(|j| j.cron.clone()).collect(), now());
    for job in &jobs {
        tracing::info!(name = %job.name, definition = %job.definition, "cron scheduled (UTC, on core 0)");
    }
    loop {
        let now = now();
        for (i, at) in schedule.due(now) {
            if core.shutting_down() {
                return;
            }
            fire(&core, &jobs[i], at);
        }
        let Some(next) = schedule.next_wake() else {
            tracing::warn!("no cron has a future time: the cron task ends");
            return;
        };
        let wait = (next - now).to_std().unwrap_or_default().min(MAX_SLEEP);
        monoio::time::sleep(wait).await;
    }
}

fn fire(core: &Rc<Core>, job: &CronJob, at: DateTime<Utc>) {
    let scheduled = UNIX_EPOCH
        + Duration::new(
            u64::try_from(at.timestamp()).unwrap_or(0),
            at.timestamp_subsec_nanos(),
        );
    let event = CronEvent {
        name: job.name.clone(),
        definition: job.definition.clone(),
        scheduled,
        lobby: Context::new(core.host.clone()),
    };
    tracing::debug!(name = %job.name, scheduled = %at, "cron fires");
    match &job.action {
        Action::Parties => core.parties.cron(&event),
        Action::Handler(handler) => {
            match panic::catch_unwind(AssertUnwindSafe(|| handler(event))) {
                Ok(fut) => spawn_guarded(core.id, fut),
                Err(_) => tracing::error!(name = %job.name, "cron handler panicked"),
            }
        }
    }
}
