//! The docker backend as the sweep uses it: each worker has one simulated instance, in
//! which it realises its topologies one after another, the cells of each at once (a
//! mock per cell, as on the netns backend).

use std::path::Path;
use std::sync::atomic::AtomicU32;

use super::images::{ImageSet, TARS_DIR};
use super::instance::DockerInstance;
use super::leaf::DockerLeaf;
use super::{connect, DockerError};
use crate::backend::{Lab, Site};
use crate::probe::{Leaf, Tools};
use crate::topology::Topology;
use imds_mock::{MetadataOptionsChange, MockAws, MockConfig};

/// The docker backend for the sweep: each worker has one simulated instance, in which
/// it realises its topologies one after another (the mock's options are reset between
/// them); each cell of a topology gets a mock of its own ([`Site::cell_mock`]).
pub struct DockerLab {
    /// The machine's Docker Engine, where the instance containers run.
    pub docker: bollard::Docker,
    /// The images (and their tars) the instances are started with.
    pub images: ImageSet,
    /// This machine's programs, for `host`.
    pub tools: Tools,
}

impl DockerLab {
    /// Connects to the engine and makes sure the images and their tars are there
    /// (building what is missing: minutes on a cold machine).
    pub async fn prepare(tools: Tools, shim: &Path) -> Result<DockerLab, DockerError> {
        let docker = connect().await?;
        let images = ImageSet::prepare(&docker, shim, Path::new(TARS_DIR), &|_| {}).await?;
        Ok(DockerLab {
            docker,
            images,
            tools,
        })
    }
}

struct DockerSite<'b> {
    instance: &'b DockerInstance,
    leaf: DockerLeaf<'b>,
    /// How many cell mocks it has made.
    cell_mocks: AtomicU32,
}

impl Site for DockerSite<'_> {
    fn mock(&self) -> &MockAws {
        self.instance.mock()
    }

    fn leaf(&self) -> &dyn Leaf {
        &self.leaf
    }

    fn cell_mock(&self) -> Option<Result<MockAws, Box<dyn std::error::Error + Send + Sync>>> {
        Some(
            self.instance
                .start_cell_mock(&self.cell_mocks)
                .map_err(Into::into),
        )
    }
}

impl Lab for DockerLab {
    type Worker = DockerInstance;
    type Error = DockerError;

    fn worker(&self) -> Result<DockerInstance, DockerError> {
        DockerInstance::start(&self.docker, &self.images, MockConfig::default())
    }

    fn realise<'b>(
        &self,
        worker: &'b mut DockerInstance,
        topology: &Topology,
    ) -> Result<Box<dyn Site + 'b>, DockerError> {
        let instance: &'b DockerInstance = worker;
        let defaults = MockConfig::default().options;
        instance.mock().modify(&MetadataOptionsChange {
            hop_limit: Some(defaults.hop_limit),
            http_tokens: Some(defaults.http_tokens),
            http_endpoint: Some(defaults.http_endpoint),
            http_protocol_ipv6: Some(defaults.http_protocol_ipv6),
            instance_metadata_tags: Some(defaults.instance_metadata_tags),
        });
        let leaf = DockerLeaf::realise(instance, topology, &self.tools)?;
        Ok(Box::new(DockerSite {
            instance,
            leaf,
            cell_mocks: AtomicU32::new(0),
        }))
    }

    fn shared_setup(&self, topology: &Topology) -> Option<&'static str> {
        topology.preset().and_then(DockerLeaf::shared_setup)
    }
}
