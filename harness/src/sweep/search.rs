//! The search over hop limits for one cell: the smallest hop limit at which a client
//! works, confirmed at its neighbours.

use std::collections::BTreeMap;

use imds_vocab::HopLimit;

use serde::Serialize;

/// How the minimal hop limit is searched for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Binary search, seeded by earlier measurements, confirmed at the neighbours.
    Bisect,
    /// 1, 2, 3, ... until the client works: the naive sweep, for comparison.
    Linear,
}

/// The result of a search over hop limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Search {
    /// The smallest hop limit that works; `None`: none up to 64 does.
    pub minimal: Option<HopLimit>,
    /// Every hop limit probed, in order, and whether it worked (one may appear twice
    /// when a failure was probed again to confirm it).
    pub tried: Vec<(HopLimit, bool)>,
}

/// The smallest hop limit in 1..=64 at which `works` holds, assuming it then holds at
/// every larger one. A `seed` (the expected answer) is checked first: if the one below
/// it fails and `seed` works, two probes suffice. Whatever the path, the answer H was
/// probed and worked, and H-1 (if any) was probed and failed.
pub fn search<E>(
    strategy: Strategy,
    seed: Option<HopLimit>,
    mut works: impl FnMut(HopLimit) -> Result<bool, E>,
) -> Result<Search, E> {
    // The search runs on indices into every hop limit, in order.
    let all: Vec<HopLimit> = HopLimit::all().collect();
    let (min, max) = (0, all.len() - 1);
    let mut tried: Vec<(HopLimit, bool)> = Vec::new();
    let mut known: BTreeMap<usize, bool> = BTreeMap::new();
    // `fresh`: probe even if the answer is known (and replace it).
    let mut probe = |i: usize, fresh: bool, tried: &mut Vec<(HopLimit, bool)>| -> Result<bool, E> {
        if let Some(&ok) = known.get(&i).filter(|_| !fresh) {
            return Ok(ok);
        }
        let ok = works(all[i])?;
        known.insert(i, ok);
        tried.push((all[i], ok));
        Ok(ok)
    };

    let minimal = match strategy {
        Strategy::Linear => {
            let mut found = None;
            for i in min..=max {
                if probe(i, false, &mut tried)? {
                    found = Some(i);
                    break;
                }
            }
            found
        }
        Strategy::Bisect => {
            let (mut lo, mut hi) = (min, max);
            let mut settled = None;
            if let Some(seed) = seed.and_then(|s| all.iter().position(|h| *h == s)) {
                if probe(seed, false, &mut tried)? {
                    if seed == min || !probe(seed - 1, false, &mut tried)? {
                        settled = Some(Some(seed));
                    } else {
                        hi = seed - 1;
                    }
                } else {
                    lo = seed + 1;
                }
            }
            match settled {
                Some(answer) => answer,
                None if lo > max || !probe(hi, false, &mut tried)? => None,
                None => {
                    while lo < hi {
                        let mid = lo + (hi - lo) / 2;
                        if probe(mid, false, &mut tried)? {
                            hi = mid;
                        } else {
                            lo = mid + 1;
                        }
                    }
                    Some(hi)
                }
            }
        }
    };

    // A failure is trusted only when it happens twice: a busy machine can delay a token
    // past the client's timeout, which looks like a dropped one. The failure just below
    // the answer is probed again; if it works now, the answer moves down.
    let mut minimal = minimal;
    for _ in 0..CONFIRMATIONS {
        let Some(m) = minimal.filter(|m| *m > min) else {
            break;
        };
        if !probe(m - 1, true, &mut tried)? {
            break;
        }
        let mut lower = m - 1;
        while lower > min && probe(lower - 1, false, &mut tried)? {
            lower -= 1;
        }
        minimal = Some(lower);
    }

    Ok(Search {
        minimal: minimal.map(|i| all[i]),
        tried,
    })
}

/// How often the failure below an answer is probed again before it is trusted.
const CONFIRMATIONS: usize = 2;

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(n: u32) -> HopLimit {
        HopLimit::new(n).unwrap()
    }

    fn needs(n: u32) -> impl FnMut(HopLimit) -> Result<bool, ()> {
        move |h| Ok(h >= hop(n))
    }

    #[test]
    fn bisect_finds_every_threshold_and_confirms_its_neighbours() {
        for n in 1..=64 {
            let s = search(Strategy::Bisect, None, needs(n)).unwrap();
            assert_eq!(s.minimal, Some(hop(n)));
            assert!(s.tried.contains(&(hop(n), true)));
            if n > 1 {
                assert!(s.tried.contains(&(hop(n - 1), false)), "{n}: {:?}", s.tried);
            }
            // At most 9 for the bisect, and the failure below the answer once more.
            assert!(s.tried.len() <= 10, "{n}: {} probes", s.tried.len());
        }
    }

    #[test]
    fn a_right_seed_takes_three_probes_and_a_wrong_one_still_finds_the_answer() {
        let s = search(Strategy::Bisect, Some(hop(3)), needs(3)).unwrap();
        assert_eq!(
            s.tried,
            [(hop(3), true), (hop(2), false), (hop(2), false)],
            "the seed, the one below, and that failure once more"
        );
        for seed in [1, 2, 5, 64] {
            let s = search(Strategy::Bisect, Some(hop(seed)), needs(3)).unwrap();
            assert_eq!(s.minimal, Some(hop(3)), "seed {seed}");
        }
        let always = search(Strategy::Bisect, Some(hop(4)), needs(1)).unwrap();
        assert_eq!(always.minimal, Some(HopLimit::MIN));
    }

    #[test]
    fn never_working_is_none_and_linear_agrees() {
        let never = search(Strategy::Bisect, Some(hop(3)), |_| Ok::<_, ()>(false)).unwrap();
        assert_eq!(never.minimal, None);
        for n in [1, 2, 7] {
            let s = search(Strategy::Linear, None, needs(n)).unwrap();
            let confirmation = usize::from(n > 1);
            assert_eq!(
                (s.minimal, s.tried.len()),
                (Some(hop(n)), n as usize + confirmation)
            );
        }
    }

    /// A failure that does not happen again (a token delayed past the timeout on a busy
    /// machine) does not raise the answer.
    #[test]
    fn a_failure_that_does_not_happen_again_does_not_raise_the_answer() {
        for strategy in [Strategy::Bisect, Strategy::Linear] {
            for seed in [None, Some(hop(3))] {
                let mut noisy_once = true;
                let s = search(strategy, seed, |h| {
                    if h == hop(3) && std::mem::take(&mut noisy_once) {
                        return Ok::<_, ()>(false);
                    }
                    Ok(h >= hop(3))
                })
                .unwrap();
                assert_eq!(
                    s.minimal,
                    Some(hop(3)),
                    "{strategy:?} {seed:?}: {:?}",
                    s.tried
                );
                assert_eq!(s.tried.last(), Some(&(hop(2), false)), "{:?}", s.tried);
            }
        }
        // A failure that happens every time stands.
        let s = search(Strategy::Bisect, Some(hop(3)), needs(4)).unwrap();
        assert_eq!(s.minimal, Some(hop(4)));
    }
}
