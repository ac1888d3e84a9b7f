//! The relay's log: one line per event on stderr, `<time> imds-shim relay: <message>`, through
//! `tracing`. Writing never panics and never stops serving: a closed or full stderr loses the
//! line, nothing else (tracing-subscriber ignores the write error; its own report of it, on
//! stderr with `eprintln!`, is turned off).
//!
//! Refusals are summarised per client address: in each 10 s window the first refusal of each
//! kind (`403 wrong secret`, `404 path`, ...) from an address is logged in full, the others are
//! counted, and one line per address gives the counts when the window ends. A flood of
//! refusals writes a bounded number of lines (a few kinds per address, at most 4096 addresses
//! apart).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How long refusals from one address are counted before their summary is logged.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);
/// The most addresses counted apart in one window; the others are counted together.
const MAX_CLIENTS: usize = 4096;

/// Sends the relay's log lines to stderr; call once, before the first line. A second call
/// (another subscriber is installed) changes nothing.
pub fn init() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .event_format(Line)
        .log_internal_errors(false);
    let subscriber = tracing_subscriber::registry()
        .with(layer)
        .with(tracing_subscriber::filter::LevelFilter::INFO);
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// One log line. Never given a secret.
pub fn log(line: &str) {
    tracing::info!("{line}");
}

/// `<RFC 3339 time> imds-shim relay: <message>`.
struct Line;

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(
            writer,
            "{} imds-shim relay: ",
            super::role::rfc3339(SystemTime::now())
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// The refusals of the current window.
#[derive(Debug)]
pub struct Refusals {
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    /// Per address: per kind, the refusals not logged in full.
    clients: HashMap<IpAddr, BTreeMap<&'static str, u64>>,
    /// The same for addresses beyond [`MAX_CLIENTS`], every one counted.
    others: BTreeMap<&'static str, u64>,
}

impl Default for Refusals {
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

impl Refusals {
    /// No refusals yet; the first window starts at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            window: Mutex::new(Window {
                started: now,
                clients: HashMap::new(),
                others: BTreeMap::new(),
            }),
        }
    }

    /// Records a refusal of `kind` (e.g. `403 wrong secret`) to `from` at `now`: logs
    /// `line()` when it is the first of its kind from this address in the window, counts it
    /// otherwise; lines go to `out`.
    pub fn refused(
        &self,
        from: IpAddr,
        kind: &'static str,
        line: impl FnOnce() -> String,
        now: Instant,
        out: &mut impl FnMut(&str),
    ) {
        let mut window = self.window.lock();
        if now.saturating_duration_since(window.started) >= SUMMARY_INTERVAL {
            window.flush(now, out);
        }
        let full = window.clients.len() >= MAX_CLIENTS;
        let first = match window.clients.get_mut(&from) {
            Some(kinds) => {
                if let Some(count) = kinds.get_mut(kind) {
                    *count += 1;
                    false
                } else {
                    kinds.insert(kind, 0);
                    true
                }
            }
            None if !full => {
                window.clients.insert(from, BTreeMap::from([(kind, 0)]));
                true
            }
            None => {
                *window.others.entry(kind).or_default() += 1;
                false
            }
        };
        drop(window);
        if first {
            out(&line());
        }
    }

    /// Logs the summaries of the window if it has ended by `now`, and starts the next.
    pub fn flush_if_due(&self, now: Instant, out: &mut impl FnMut(&str)) {
        let mut window = self.window.lock();
        if now.saturating_duration_since(window.started) >= SUMMARY_INTERVAL {
            window.flush(now, out);
        }
    }
}

impl Window {
    fn flush(&mut self, now: Instant, out: &mut impl FnMut(&str)) {
        let seconds = now.saturating_duration_since(self.started).as_secs();
        let mut clients: Vec<_> = self
            .clients
            .drain()
            .filter(|(_, kinds)| kinds.values().any(|n| *n > 0))
            .collect();
        clients.sort_unstable_by_key(|(ip, _)| *ip);
        for (ip, counts) in clients {
            out(&summary(&format!("from {ip}"), seconds, &counts));
        }
        if !self.others.is_empty() {
            let others = std::mem::take(&mut self.others);
            out(&summary(
                &format!("from more than {MAX_CLIENTS} other addresses"),
                seconds,
                &others,
            ));
        }
        self.started = now;
    }
}

fn summary(from: &str, seconds: u64, counts: &BTreeMap<&'static str, u64>) -> String {
    let total: u64 = counts.values().sum();
    let by_status: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    format!(
        "{total} more refusal(s) {from} in the last {seconds} s ({}), not logged one by one",
        by_status.join(", ")
    )
}

/// Logs the refusal summaries every [`SUMMARY_INTERVAL`], also when no refusal comes to
/// trigger them.
pub async fn flush_forever(refusals: std::sync::Arc<Refusals>) {
    let mut tick = tokio::time::interval(SUMMARY_INTERVAL);
    loop {
        tick.tick().await;
        refusals.flush_if_due(Instant::now(), &mut |l| log(l));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_one_line_then_one_summary_per_window() {
        let t = Instant::now();
        let r = Refusals::new(t);
        let mut lines = Vec::new();
        let a: IpAddr = "10.0.0.2".parse().unwrap();
        let b: IpAddr = "10.0.0.3".parse().unwrap();
        let mut push = |l: &str| lines.push(l.to_owned());
        for i in 0..25_000u64 {
            let now = t + Duration::from_micros(i * 480); // 12 s in all
            r.refused(
                a,
                "403 wrong secret",
                || "403 from a".into(),
                now,
                &mut push,
            );
        }
        let later = t + Duration::from_secs(12);
        r.refused(b, "404 path", || "404 from b".into(), later, &mut push);
        // Another kind from the same address is logged in full once too.
        for _ in 0..3 {
            r.refused(
                a,
                "403 revoked",
                || "403 revoked a".into(),
                later,
                &mut push,
            );
        }
        r.flush_if_due(t + Duration::from_secs(25), &mut push);
        assert_eq!(lines.len(), 6, "{lines:#?}");
        assert_eq!(lines[0], "403 from a");
        assert!(
            lines[1].starts_with(
                "20833 more refusal(s) from 10.0.0.2 in the last 10 s (403 wrong secret: 20833)"
            ),
            "{}",
            lines[1]
        );
        assert_eq!(lines[2], "403 from a");
        assert_eq!(lines[3], "404 from b");
        assert_eq!(lines[4], "403 revoked a");
        assert!(
            lines[5].starts_with(
                "4167 more refusal(s) from 10.0.0.2 in the last 14 s \
                 (403 revoked: 2, 403 wrong secret: 4165)"
            ),
            "{}",
            lines[5]
        );
    }

    #[test]
    fn many_addresses_are_counted_together_beyond_the_cap() {
        let t = Instant::now();
        let r = Refusals::new(t);
        let mut lines = 0;
        for i in 0..(MAX_CLIENTS as u32 + 500) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            r.refused(ip, "403 unknown grant", || "x".into(), t, &mut |_| {
                lines += 1;
            });
        }
        assert_eq!(lines, MAX_CLIENTS);
        let mut summary = Vec::new();
        r.flush_if_due(t + SUMMARY_INTERVAL, &mut |l| summary.push(l.to_owned()));
        assert_eq!(summary.len(), 1, "{summary:?}");
        assert!(
            summary[0].starts_with("500 more refusal(s) from more than"),
            "{summary:?}"
        );
    }
}
