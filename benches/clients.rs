//! What a user waits for and reads, per client (root only): at the netns backend's
//! `earthly-run` leaf (two routing hops) with the hop limit one too low (2), tokens
//! required, the time from start to failure and the message; with tokens optional at
//! the same hop limit, whether the client fell back to IMDSv1 (the credential set that
//! signed its GetCallerIdentity, as the mock recorded it) and how long it took.
//!
//! `cargo bench --profile dev --bench clients [-- RUNS] [--write]` (default 3 runs):
//! prints the medians and every run; `--write` also keeps them as the fixtures in
//! `fixtures/clients/` (`make client-fixtures`): `<client>.txt`, the message exactly
//! as printed (secrets masked, though none of these prints one), and `timings.toml`.

use std::fmt::Write as _;
use std::time::Duration;

use imds_e2e::clients::{self, identity_clients, ClientLeaf, PRESET};
use imds_mock::ImdsVersion;
use imds_vocab::HttpTokens;

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs = imds_e2e::stats::runs_requested(3);
    let write = args.iter().any(|a| a == "--write");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let machine = imds_e2e::stats::machine();
    println!(
        "client benchmarks at {PRESET} (hop limit {}), {runs} runs, {machine}",
        ClientLeaf::too_low()
    );
    let leaf = tokio::task::block_in_place(ClientLeaf::start);
    let mut toml = format!(
        "# What each client does at {PRESET} (2 routing hops) at hop limit {}: written by\n\
         # `make client-fixtures` (cargo bench --profile dev --bench clients -- {runs} --write).\n\
         # Medians of {runs} runs, in ms. Machine: {machine}.\n",
        ClientLeaf::too_low()
    );
    for client in identity_clients() {
        let (mut failed, mut messages) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let run = tokio::task::block_in_place(|| {
                leaf.run(client, ClientLeaf::too_low(), HttpTokens::Required)
            });
            assert!(
                !run.outcome.ok,
                "{client} got an identity at hop limit one too low"
            );
            failed.push(run.elapsed);
            messages.push(run.outcome.message.unwrap_or_default());
        }
        let (mut optional, mut fell_back) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let run = tokio::task::block_in_place(|| {
                leaf.run(client, ClientLeaf::too_low(), HttpTokens::Optional)
            });
            optional.push(run.elapsed);
            fell_back.push(run.outcome.ok && run.signed_with == Some(ImdsVersion::V1));
        }
        let message = messages[0].clone();
        let same = messages.iter().all(|m| *m == message);
        let falls_back = fell_back.iter().all(|f| *f);
        assert!(
            falls_back || fell_back.iter().all(|f| !f),
            "{client}: fell back in some runs only: {fell_back:?}"
        );
        println!(
            "{:<6} fails after {:>5} ms (runs: {:?}); tokens optional: {} after {:>5} ms (runs: {:?})\n       says: {}{}",
            client.name(),
            ms(median(failed.clone())),
            failed.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            if falls_back { "falls back to IMDSv1, identity" } else { "no fallback" },
            ms(median(optional.clone())),
            optional.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            message.replace('\n', "\n             "),
            if same { String::new() } else { format!("\n       (the runs' messages differ: {messages:?})") }
        );
        let _ = write!(
            toml,
            "\n[{}]\ntime_to_fail_ms = {}\ntime_to_fail_runs_ms = {:?}\nfalls_back_to_imdsv1 = {falls_back}\n\
             tokens_optional_ms = {}\ntokens_optional_runs_ms = {:?}\n",
            client.name(),
            ms(median(failed.clone())),
            failed.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            ms(median(optional.clone())),
            optional.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        );
        if write {
            assert!(same, "{client}: the runs' messages differ; not written");
            std::fs::write(clients::message_fixture(client), format!("{message}\n")).unwrap();
        }
    }
    if write {
        std::fs::write(clients::timings_fixture(), toml).unwrap();
        println!("wrote fixtures/clients/");
    }
}
