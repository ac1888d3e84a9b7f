//! A simulated EC2 instance of the netns backend for `imds-shim`'s end-to-end tests: a
//! realised topology with its mock, and an isolated client environment (IMDS, STS and EC2
//! at the site's mock) in which `imds-shim` runs inside the site's namespaces.

use std::process::Output;

use imds_harness::backend::endpoints::{EC2_URL, IMDS_URL, STS_URL};
use imds_harness::backend::netns::{Namespace, NetnsSite};
use imds_harness::probe::env::ClientEnv;
use imds_harness::topology::Topology;
use imds_mock::MockConfig;

use crate::bins;

/// A site and the environment `imds-shim` runs with there.
pub struct ShimSite {
    pub site: NetnsSite,
    pub env: ClientEnv,
    _home: tempfile::TempDir,
}

impl ShimSite {
    /// Realises `topology` with a mock of `config`. Must be called in a Tokio runtime.
    pub fn start(topology: &str, config: MockConfig) -> ShimSite {
        let site =
            NetnsSite::start(&Topology::parse(topology).unwrap(), config).expect("the site starts");
        let home = tempfile::Builder::new()
            .prefix("imdsh-shim-home-")
            .tempdir()
            .unwrap();
        let env = ClientEnv::new(home.path(), IMDS_URL)
            .with("AWS_ENDPOINT_URL_STS", STS_URL)
            .with("AWS_ENDPOINT_URL_EC2", EC2_URL);
        ShimSite {
            site,
            env,
            _home: home,
        }
    }

    /// `imds-shim <args>` in `ns`.
    pub fn shim(&self, ns: &Namespace, args: &[&str]) -> Output {
        let shim = bins::shim();
        tokio::task::block_in_place(|| {
            self.env
                .apply(ns.exec(&shim, args))
                .stdout_capture()
                .stderr_capture()
                .unchecked()
                .run()
                .unwrap()
        })
    }

    /// `imds-shim <args>` on the simulated instance itself (depth 0).
    pub fn at_host(&self, args: &[&str]) -> Output {
        self.shim(self.site.host(), args)
    }
}
