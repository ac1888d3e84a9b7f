//! Panics in a server under test: a panic in a connection task, which tokio would
//! swallow, still fails the test that provoked it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts every panic raised outside `test_file` (the test's own asserts are not the
/// server's): the mock's code, hyper, tokio. Call it before starting the server; once per
/// test binary is enough, later calls do nothing.
pub fn watch(test_file: &'static str) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.location().is_none_or(|l| l.file() != test_file) {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

/// Fails if anything [`watch`] counts has panicked.
pub fn assert_none() {
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "the server panicked (see the panic message above)"
    );
}
