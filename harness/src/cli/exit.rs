//! The exit codes of `imds-harness`: `measure`'s, of which the other subcommands use
//! a subset.

use imds_harness::gate::Decision;
use serde::Serialize;

/// How a subcommand exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Exit {
    /// 0: done; for `measure`, every topology as recorded or better.
    Ok,
    /// 1: for `measure`, a regression (a topology needs more than recorded, or a client
    /// gets no identity at any hop limit); for every subcommand, an error it could not
    /// go on from.
    Regression,
    /// 2: usage or environment: bad arguments, not root, a tool missing.
    Usage,
    /// 3: `measure`'s measurement failed: a probe broke, or the mock died.
    Measurement,
    /// 130: interrupted by SIGINT or SIGTERM.
    Interrupted,
}

impl Exit {
    /// The process's exit code.
    pub(super) const fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Regression => 1,
            Exit::Usage => 2,
            Exit::Measurement => 3,
            Exit::Interrupted => 130,
        }
    }
}

/// What the gate decides, as the exit says it.
impl From<Decision> for Exit {
    fn from(decision: Decision) -> Exit {
        match decision {
            Decision::Pass => Exit::Ok,
            Decision::Regression => Exit::Regression,
            Decision::NotMeasured => Exit::Usage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_documented_ones() {
        let codes: Vec<u8> = [
            Exit::Ok,
            Exit::Regression,
            Exit::Usage,
            Exit::Measurement,
            Exit::Interrupted,
        ]
        .map(Exit::code)
        .to_vec();
        assert_eq!(codes, [0, 1, 2, 3, 130]);
        let decided = [Decision::Pass, Decision::Regression, Decision::NotMeasured];
        assert_eq!(
            decided.map(Exit::from),
            [Exit::Ok, Exit::Regression, Exit::Usage]
        );
    }
}
