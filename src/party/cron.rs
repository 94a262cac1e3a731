//! Cron definitions: what a cron is ([`CronJob`]: a parsed expression and what it runs), what
//! its handler is given ([`CronEvent`]), and [`Schedule`], which says what is due when.
//!
//! Owns the expressions (five fields, or six with seconds first; croner's Vixie-cron semantics,
//! in UTC) and the timekeeping rules. [`Schedule`] never reads a clock: it is handed `now`
//! (core 0's cron task in `runtime::cron` passes the wall clock; the unit tests pass made-up
//! times). Each cron keeps its next time, always strictly after the last one fired, so a time
//! fires at most once: a timer that wakes early fires nothing, a wall clock stepped back waits
//! for the next time instead of repeating one, and times missed while the process was stopped
//! or stalled are fired once, as the latest of them, not as a burst. Does not own running
//! them: that is `runtime::cron`.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use chrono::{DateTime, Utc};
use croner::{
    parser::{CronParser, Seconds},
    Cron,
};

use crate::room::{Context, RoomStub};

/// One firing of a cron, as its handler sees it (PartyKit's `cron` argument).
#[derive(Clone, Debug)]
pub struct CronEvent {
    /// The name (`--cron NAME=...`); for `Builder::cron`, the expression itself.
    pub name: Arc<str>,
    /// The expression, as given.
    pub definition: Arc<str>,
    /// The time this firing was scheduled for (a little before it runs).
    pub scheduled: SystemTime,
    /// What the handler reaches.
    pub(crate) lobby: Context,
}

impl CronEvent {
    /// What the handler can reach (PartyKit's `CronLobby`): any party's rooms.
    pub fn lobby(&self) -> Context {
        self.lobby.clone()
    }

    /// A room of any party: `cron.party_room("counter", "r1").fetch(FetchRequest::get())`.
    pub fn party_room(&self, party: &str, room: &str) -> RoomStub {
        self.lobby().party_room(party, room)
    }

    /// `scheduled` in milliseconds since the epoch (PartyKit's `scheduledTime`).
    pub fn scheduled_ms(&self) -> u64 {
        self.scheduled
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A server-level cron handler: the future it returns runs on core 0.
pub type CronHandler = Arc<dyn Fn(CronEvent) -> Pin<Box<dyn Future<Output = ()>>> + Send + Sync>;

/// What a cron does when due.
#[derive(Clone)]
pub(crate) enum Action {
    /// Every party's `on_cron` (a named cron).
    Parties,
    Handler(CronHandler),
}

/// A parsed cron and what it runs.
#[derive(Clone)]
pub struct CronJob {
    pub(crate) name: Arc<str>,
    pub(crate) definition: Arc<str>,
    pub(crate) cron: Cron,
    pub(crate) action: Action,
}

impl std::fmt::Debug for CronJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CronJob")
            .field("name", &self.name)
            .field("definition", &self.definition)
            .finish_non_exhaustive()
    }
}

/// Parses a cron expression: five fields, or six with seconds first.
///
/// # Errors
/// What croner says is wrong with it.
pub fn parse(expr: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expr)
        .map_err(|e| format!("cron expression {expr:?}: {e}"))
}

impl CronJob {
    /// A named cron: every party's `on_cron`.
    ///
    /// # Errors
    /// A bad expression.
    pub fn named(name: &str, expr: &str) -> Result<CronJob, String> {
        Ok(CronJob {
            name: name.into(),
            definition: expr.into(),
            cron: parse(expr)?,
            action: Action::Parties,
        })
    }

    /// A server-level handler; its name is the expression.
    ///
    /// # Errors
    /// A bad expression.
    pub fn handler(expr: &str, handler: CronHandler) -> Result<CronJob, String> {
        Ok(CronJob {
            name: expr.into(),
            definition: expr.into(),
            cron: parse(expr)?,
            action: Action::Handler(handler),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Each cron's next time. Pure: the caller says what time it is.
pub struct Schedule {
    crons: Vec<Cron>,
    /// INVARIANT: `next[i]` is after every time already fired for cron `i` (`None`: the
    /// expression has no future time).
    next: Vec<Option<DateTime<Utc>>>,
}

impl Schedule {
    /// The first time of each cron strictly after `now`.
    pub fn new(crons: Vec<Cron>, now: DateTime<Utc>) -> Self {
        let next = crons.iter().map(|c| after(c, now)).collect();
        Schedule { crons, next }
    }

    /// The crons due at `now`, each once, with the time it fires for: the latest scheduled time
    /// not after `now` (earlier missed ones are folded into it). Each cron's next time moves
    /// past `now`.
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<(usize, DateTime<Utc>)> {
        let mut fired = Vec::new();
        for (i, cron) in self.crons.iter().enumerate() {
            let Some(next) = self.next[i] else { continue };
            if next > now {
                continue;
            }
            let at = cron
                .find_previous_occurrence(&now, true)
                .ok()
                .filter(|t| *t >= next)
                .unwrap_or(next);
            fired.push((i, at));
            self.next[i] = after(cron, now);
            debug_assert!(self.next[i].is_none_or(|n| n > at));
        }
        fired
    }

    /// The earliest next time of any cron.
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        self.next.iter().flatten().min().copied()
    }
}

fn after(cron: &Cron, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&t, false).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn schedule(exprs: &[&str], start: &str) -> Schedule {
        Schedule::new(exprs.iter().map(|e| parse(e).unwrap()).collect(), t(start))
    }

    #[test]
    fn fires_once_per_scheduled_time() {
        let mut s = schedule(&["*/5 * * * *"], "2026-12-01T10:02:30Z");
        assert_eq!(s.next_wake(), Some(t("2026-12-01T10:05:00Z")));
        // A timer that wakes early fires nothing.
        assert!(s.due(t("2026-12-01T10:04:59.999Z")).is_empty());
        assert_eq!(
            s.due(t("2026-12-01T10:05:00Z")),
            [(0, t("2026-12-01T10:05:00Z"))]
        );
        // Asked again in the same instant or just after: not again.
        assert!(s.due(t("2026-12-01T10:05:00Z")).is_empty());
        assert!(s.due(t("2026-12-01T10:05:00.400Z")).is_empty());
        assert_eq!(s.next_wake(), Some(t("2026-12-01T10:10:00Z")));
        assert_eq!(
            s.due(t("2026-12-01T10:10:00.020Z")),
            [(0, t("2026-12-01T10:10:00Z"))]
        );
    }

    #[test]
    fn missed_times_fold_into_the_latest() {
        let mut s = schedule(&["*/5 * * * *"], "2026-12-01T10:00:00Z");
        // Stalled for half an hour: one firing, for 10:30, then 10:35 next.
        assert_eq!(
            s.due(t("2026-12-01T10:31:10Z")),
            [(0, t("2026-12-01T10:30:00Z"))]
        );
        assert_eq!(s.next_wake(), Some(t("2026-12-01T10:35:00Z")));
    }

    #[test]
    fn a_clock_stepped_back_does_not_repeat_a_time() {
        let mut s = schedule(&["0 * * * *"], "2026-12-01T09:59:00Z");
        assert_eq!(s.due(t("2026-12-01T10:00:01Z")).len(), 1);
        // The clock goes back 10 minutes, then forward past 10:00 again.
        assert!(s.due(t("2026-12-01T09:50:00Z")).is_empty());
        assert!(s.due(t("2026-12-01T10:00:00Z")).is_empty());
        assert!(s.due(t("2026-12-01T10:59:59Z")).is_empty());
        assert_eq!(
            s.due(t("2026-12-01T11:00:00Z")),
            [(0, t("2026-12-01T11:00:00Z"))]
        );
    }

    #[test]
    fn seconds_field_and_several_crons() {
        let mut s = schedule(&["* * * * * *", "*/2 * * * *"], "2026-12-01T10:00:58.5Z");
        assert_eq!(s.next_wake(), Some(t("2026-12-01T10:00:59Z")));
        assert_eq!(
            s.due(t("2026-12-01T10:00:59Z")),
            [(0, t("2026-12-01T10:00:59Z"))]
        );
        assert_eq!(
            s.due(t("2026-12-01T10:02:00.1Z")),
            [
                (0, t("2026-12-01T10:02:00Z")),
                (1, t("2026-12-01T10:02:00Z"))
            ]
        );
        assert_eq!(s.next_wake(), Some(t("2026-12-01T10:02:01Z")));
    }

    #[test]
    fn vixie_fields() {
        // Day of month OR day of week, as Vixie cron: the 1st, and every Monday.
        let mut s = schedule(&["0 0 1 * MON"], "2026-11-30T12:00:00Z");
        assert_eq!(s.next_wake(), Some(t("2026-12-01T00:00:00Z")));
        s.due(t("2026-12-01T00:00:00Z"));
        assert_eq!(s.next_wake(), Some(t("2026-12-07T00:00:00Z")));
    }

    #[test]
    fn bad_expressions_are_refused() {
        for bad in ["", "* * * *", "61 * * * *", "* * * * * * * *", "nonsense"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        for good in [
            "*/5 * * * *",
            "* * * * * *",
            "0 0 L * *",
            "0 12 * * MON-FRI",
        ] {
            assert!(parse(good).is_ok(), "{good:?}");
        }
    }
}
