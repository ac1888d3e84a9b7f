//! Work that waits (clients waiting out their time-outs) run at once, a thread each.

/// `run` on each of `items` at once, one thread each, inside the calling thread's Tokio
/// runtime when it has one (the docker backend's leaves run their commands on it): the
/// results in the items' order. A panic in one is raised here.
pub fn at_once<I: Sync, T: Send>(items: &[I], run: impl Fn(&I) -> T + Sync) -> Vec<T> {
    let runtime = tokio::runtime::Handle::try_current().ok();
    let (runtime, run) = (&runtime, &run);
    std::thread::scope(|scope| {
        let started: Vec<_> = items
            .iter()
            .map(|item| {
                scope.spawn(move || {
                    let _entered = runtime.as_ref().map(tokio::runtime::Handle::enter);
                    run(item)
                })
            })
            .collect();
        started
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}
