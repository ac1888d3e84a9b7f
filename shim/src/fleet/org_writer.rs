//! The writer of `audit --organization`: a thread of its own that takes the records as
//! they come and writes them, JSON lines or text, so that none is kept. A reader that
//! stopped early (`| head`) is no error: the rest is read and dropped.

use std::io::{self, BufWriter, Write as _};
use std::thread::JoinHandle;

use tokio::sync::mpsc::Receiver;

use super::org_report::Record;

/// What the text output says of a record, if anything (instances and templates are in
/// the JSON lines only: an organization has too many to list).
fn text(record: &Record) -> Option<String> {
    match record {
        Record::Scope(scope) => Some(format!("{}\n", scope.line())),
        Record::AccountSkipped { account, status } => {
            Some(format!("skipped {account}: {status}\n"))
        }
        Record::RegionSkipped {
            account,
            region,
            opt_in_status,
        } => Some(format!("skipped {account} {region}: {opt_in_status}\n")),
        Record::Summary(summary) => Some(summary.render()),
        Record::Fix { .. } => record.fix_line(),
        Record::NotAudited { .. }
        | Record::Instance { .. }
        | Record::LaunchTemplate { .. }
        | Record::AccountDefaults { .. } => None,
    }
}

/// Writes every record `rx` gets until it closes.
pub fn spawn(mut rx: Receiver<Record>, json: bool) -> JoinHandle<io::Result<()>> {
    std::thread::spawn(move || {
        let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
        let mut failed: Option<io::Error> = None;
        while let Some(record) = rx.blocking_recv() {
            if failed.is_some() {
                continue;
            }
            let written = if json {
                serde_json::to_writer(&mut out, &record)
                    .map_err(io::Error::from)
                    .and_then(|()| out.write_all(b"\n"))
            } else {
                text(&record).map_or(Ok(()), |t| out.write_all(t.as_bytes()))
            };
            if let Err(e) = written {
                failed = Some(e);
            }
        }
        match failed.map_or_else(|| out.flush(), Err) {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e),
            _ => Ok(()),
        }
    })
}
