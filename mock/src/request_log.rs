//! The requests a mock answered, bounded in records and in bytes whatever the clients
//! send, with marks that stay right while old records are dropped.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::Serialize;

use crate::imds_version::ImdsVersion;

/// Which of the mock's services answered a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// The instance metadata service.
    Imds,
    /// STS.
    Sts,
    /// The EC2 API.
    Ec2,
}

/// One request the mock answered: no header, body or query is kept, so nothing secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    /// Which service answered.
    pub service: Service,
    /// The request's method, at most [`RequestLog::MAX_METHOD`] bytes of it.
    pub method: String,
    /// The path, without the query, at most [`RequestLog::MAX_PATH`] bytes of it.
    pub path: String,
    /// Whether the method or the path was longer than kept, and cut.
    pub truncated: bool,
    /// The response's status code.
    pub status: u16,
    /// The client's address.
    pub peer: IpAddr,
    /// For a signed API call: which credential set signed it (the one IMDS handed to
    /// IMDSv1 or to IMDSv2 callers).
    pub signed_with: Option<ImdsVersion>,
}

impl RequestRecord {
    /// A record of a request, its method and path cut to what the log keeps.
    pub(crate) fn new(
        service: Service,
        (method, path): (&str, &str),
        status: u16,
        peer: IpAddr,
        signed_with: Option<ImdsVersion>,
    ) -> Self {
        let (method, method_cut) = prefix(method, RequestLog::MAX_METHOD);
        let (path, path_cut) = prefix(path, RequestLog::MAX_PATH);
        RequestRecord {
            service,
            method: method.to_owned(),
            path: path.to_owned(),
            truncated: method_cut || path_cut,
            status,
            peer,
            signed_with,
        }
    }

    /// What keeping this record costs, counted against [`RequestLog::BYTE_BUDGET`].
    fn cost(&self) -> usize {
        size_of::<Self>() + self.method.capacity() + self.path.capacity()
    }
}

/// The longest prefix of `text` of at most `max` bytes, and whether it is shorter.
fn prefix(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let end = (0..=max)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    (&text[..end], true)
}

/// The requests a mock answered: the newest, at most [`RequestLog::CAPACITY`] of them
/// and [`RequestLog::BYTE_BUDGET`] bytes.
#[derive(Debug, Default)]
pub struct RequestLog {
    records: Mutex<Records>,
}

#[derive(Debug, Default)]
struct Records {
    kept: VecDeque<RequestRecord>,
    /// What the kept records cost, by [`RequestRecord::cost`].
    bytes: usize,
    /// How many were ever recorded, the dropped ones included.
    recorded: u64,
}

/// A point in a [`RequestLog`]: what was recorded after it is
/// [`RequestLog::since`] it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestMark(u64);

impl RequestLog {
    /// How many records are kept at most; older ones are dropped.
    pub const CAPACITY: usize = 10_000;
    /// How many bytes the kept records may take at most; older ones are dropped. Ordinary
    /// paths fill [`Self::CAPACITY`] first (10,000 records of ~150 bytes); clients
    /// sending paths of [`Self::MAX_PATH`] reach this first.
    pub const BYTE_BUDGET: usize = 16 << 20;
    /// How much of a path is kept: the longest path an SDK asks for is under 100 bytes.
    pub const MAX_PATH: usize = 2048;
    /// How much of a method is kept: the longest standard one has 7 bytes.
    pub const MAX_METHOD: usize = 16;

    fn lock(&self) -> MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn record(&self, record: RequestRecord) {
        let cost = record.cost();
        let mut records = self.lock();
        while records.kept.len() >= Self::CAPACITY
            || (records.bytes + cost > Self::BYTE_BUDGET && !records.kept.is_empty())
        {
            if let Some(dropped) = records.kept.pop_front() {
                records.bytes -= dropped.cost();
            }
        }
        records.bytes += cost;
        records.kept.push_back(record);
        records.recorded += 1;
    }

    /// The records kept, oldest first.
    pub fn snapshot(&self) -> Vec<RequestRecord> {
        self.lock().kept.iter().cloned().collect()
    }

    /// Now: the records that come after this are [`Self::since`] it.
    pub fn mark(&self) -> RequestMark {
        RequestMark(self.lock().recorded)
    }

    /// The records made after `mark` (those still kept), oldest first.
    pub fn since(&self, mark: RequestMark) -> Vec<RequestRecord> {
        let records = self.lock();
        let newer = usize::try_from(records.recorded.saturating_sub(mark.0)).unwrap_or(usize::MAX);
        let skip = records.kept.len().saturating_sub(newer);
        records.kept.iter().skip(skip).cloned().collect()
    }

    /// What the kept records cost, in bytes.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(status: u16, path: &str) -> RequestRecord {
        RequestRecord::new(
            Service::Imds,
            ("GET", path),
            status,
            IpAddr::from([127, 0, 0, 1]),
            None,
        )
    }

    fn record(status: u16) -> RequestRecord {
        request(status, "/")
    }

    #[test]
    fn since_a_mark_is_what_came_after_it_even_once_the_log_is_full() {
        let log = RequestLog::default();
        let start = log.mark();
        log.record(record(200));
        let one = log.mark();
        assert_eq!(log.since(start).len(), 1);
        assert!(log.since(one).is_empty());
        for _ in 1..RequestLog::CAPACITY {
            log.record(record(200));
        }
        let full = log.mark();
        log.record(record(401));
        log.record(record(404));
        assert_eq!(log.snapshot().len(), RequestLog::CAPACITY);
        let statuses: Vec<u16> = log.since(full).iter().map(|r| r.status).collect();
        assert_eq!(statuses, [401, 404]);
        // A mark older than what is kept gets all that is kept.
        assert_eq!(log.since(start).len(), RequestLog::CAPACITY);
    }

    #[test]
    fn a_long_path_is_cut_and_marked_and_a_short_one_is_kept_whole() {
        let long = format!("/{}", "a".repeat(64 * 1024));
        let cut = request(404, &long);
        assert!(cut.truncated);
        assert_eq!(cut.path.len(), RequestLog::MAX_PATH);
        assert!(long.starts_with(&cut.path));
        let whole = request(200, "/latest/meta-data/");
        assert!(!whole.truncated);
        assert_eq!(whole.path, "/latest/meta-data/");
        let exact = request(200, &"/".repeat(RequestLog::MAX_PATH));
        assert!(!exact.truncated);
    }

    #[test]
    fn a_long_method_is_cut_and_marked() {
        let method = "X".repeat(1000);
        let cut = RequestRecord::new(
            Service::Sts,
            (&method, "/"),
            405,
            IpAddr::from([127, 0, 0, 1]),
            None,
        );
        assert!(cut.truncated);
        assert_eq!(cut.method.len(), RequestLog::MAX_METHOD);
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // Paths from hyper are ASCII; the cut stays safe whatever it is given.
        assert_eq!(prefix("aé", 2), ("a", true));
        assert_eq!(prefix("é", 1), ("", true));
        assert_eq!(prefix("aé", 3), ("aé", false));
    }

    #[test]
    fn the_log_stays_within_its_byte_budget_dropping_the_oldest_first() {
        let log = RequestLog::default();
        let long = format!("/{}", "p".repeat(64 * 1024));
        let start = log.mark();
        // As many 64 KiB paths as the old log kept: ~650 MB before the bound.
        for i in 0..RequestLog::CAPACITY {
            log.record(request(u16::try_from(200 + i % 300).unwrap(), &long));
            assert!(log.bytes() <= RequestLog::BYTE_BUDGET);
        }
        let kept = log.snapshot();
        let per_record = request(200, &long).cost();
        assert_eq!(kept.len(), RequestLog::BYTE_BUDGET / per_record);
        assert!(kept.len() < RequestLog::CAPACITY);
        // The newest are the ones kept, in order.
        let statuses: Vec<u16> = kept.iter().map(|r| r.status).collect();
        let expected: Vec<u16> = (RequestLog::CAPACITY - kept.len()..RequestLog::CAPACITY)
            .map(|i| u16::try_from(200 + i % 300).unwrap())
            .collect();
        assert_eq!(statuses, expected);
        assert_eq!(log.since(start), kept);
    }

    #[test]
    fn marks_stay_right_when_the_budget_drops_records() {
        let log = RequestLog::default();
        let long = format!("/{}", "p".repeat(RequestLog::MAX_PATH));
        for _ in 0..RequestLog::CAPACITY {
            log.record(request(200, &long));
        }
        let mark = log.mark();
        log.record(request(401, "/short"));
        log.record(request(403, &long));
        log.record(request(404, "/short"));
        let statuses: Vec<u16> = log.since(mark).iter().map(|r| r.status).collect();
        assert_eq!(statuses, [401, 403, 404]);
        // Short records after long ones: the count bound drops them one for one, the
        // budget frees what the long ones held.
        for _ in 0..RequestLog::CAPACITY {
            log.record(request(200, "/short"));
        }
        assert_eq!(log.snapshot().len(), RequestLog::CAPACITY);
        assert!(log.snapshot().iter().all(|r| r.path == "/short"));
        assert!(log.bytes() < RequestLog::BYTE_BUDGET / 4);
    }
}
