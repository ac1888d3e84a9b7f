//! Docker-in-Docker beyond Earthly, inside a simulated instance: GitLab's docker
//! executor with a `docker:dind` service, and a pod with a dind sidecar on a kind-like
//! node.
//!
//! ```text
//!  instance: dockerd, docker0 172.17.0.1/16
//!    |- gitlab-dind (dockerd, tcp :2375, docker0 172.18.0.1/16)   <- gitlab-dind-build's client
//!    |- the job container, --link gitlab-dind:docker               <- gitlab-dind-job's client
//!    |- gitlab-job (the docker CLI, DOCKER_HOST=tcp://docker:2375: `docker run` on gitlab-dind)
//!    `- Docker network `kind` 172.18.0.0/16 (bridge br-<id>)
//!         `- kind-control-plane (dockerd as the node's runtime, no bridge of its own)
//!              |- cni0 10.244.0.1/24 (CNI bridge plugin, isGateway, ipMasq)
//!              `- k8s-pod (the pod's sandbox, --network none, eth0 on cni0)
//!                   `- dind-sidecar (--network container:k8s-pod: dockerd, docker0 172.17.0.1/16)
//!                        `- the client's container                  <- k8s-pod-dind's client
//! ```

use super::engine::{self, sh_quote, Engine};
use super::instance::{images_bind, DockerInstance};
use super::settings::EngineContainer;
use super::DockerError;
use crate::topology::Bridge;

/// The `docker:dind` service container of a GitLab job.
pub(crate) const GITLAB_DIND: &str = "gitlab-dind";
/// The alias GitLab's docker executor links the service under (`docker:dind` → `docker`).
pub(crate) const GITLAB_SERVICE_ALIAS: &str = "docker";
/// The job's `DOCKER_HOST` (GitLab's documented setting with `DOCKER_TLS_CERTDIR: ""`).
pub(crate) const GITLAB_DOCKER_HOST: &str = "DOCKER_HOST=tcp://docker:2375";
/// A long-lived job container with the docker CLI, through which the job's
/// `docker run`s go to the service.
pub(crate) const GITLAB_JOB: &str = "gitlab-job";

/// kind's Docker network for its nodes.
pub(crate) const KIND_NETWORK: &str = "kind";
/// The node container, as kind names a one-node cluster's.
pub(crate) const KIND_NODE: &str = "kind-control-plane";
/// The pod's sandbox ("pause") container on the node.
pub(crate) const POD_SANDBOX: &str = "k8s-pod";
/// The pod's dind sidecar, in the sandbox's network namespace.
pub(crate) const DIND_SIDECAR: &str = "dind-sidecar";
/// Where the node keeps its pod network's CNI config.
const POD_CNI_CONF: &str = "/etc/cni/net.d/10-pods.conf";

/// The node's CNI config for its pods: the bridge plugin on [`Bridge::Pod`] (cni0,
/// the node's pod CIDR), `isGateway`, `ipMasq`, a default route.
pub(crate) fn pod_cni_conf() -> String {
    super::instance::cni_bridge_conf("kindnet", Bridge::Pod)
}

impl DockerInstance {
    /// The `docker:dind` service of a GitLab job: a dockerd container on the
    /// instance's docker0 listening on tcp 2375 too, its own docker0 on [`Bridge::Dind`].
    /// Returns the `--link` a job container is given (`gitlab-dind:docker`).
    pub fn gitlab_dind(&self) -> Result<String, DockerError> {
        let outer = self.engine();
        self.once("gitlab-dind", || {
            self.load(&outer, &self.images().instance.clone())?;
            self.start_engine_container(
                &outer,
                GITLAB_DIND,
                &EngineContainer::nested("bridge", images_bind()),
                &[
                    engine::bip(Bridge::Dind),
                    "--host=tcp://0.0.0.0:2375".into(),
                    // What docker:dind's entrypoint adds without TLS certificates
                    // (`DOCKER_TLS_CERTDIR: ""`); dockerd 20.10 otherwise pauses 15 s.
                    "--tls=false".into(),
                ],
                None,
            )
            .map(drop)
        })?;
        Ok(format!("{GITLAB_DIND}:{GITLAB_SERVICE_ALIAS}"))
    }

    /// The engine a GitLab job's `docker` commands reach: the service's, through a job
    /// container (the instance image, for its docker CLI) linked to it, with the probe
    /// image loaded through it.
    pub fn gitlab_job(&self) -> Result<Engine, DockerError> {
        let link = self.gitlab_dind()?;
        let outer = self.engine();
        let engine = outer.nested(GITLAB_JOB, "the docker:dind service's engine");
        self.once("gitlab-job", || {
            let run = [
                "docker",
                "run",
                "--detach",
                "--name",
                GITLAB_JOB,
                "--link",
                &link,
                "--env",
                GITLAB_DOCKER_HOST,
                "--volume",
                &images_bind(),
                &self.images().instance,
                "sleep",
                "infinity",
            ]
            .map(String::from);
            self.exec_ok(outer.command(run))?;
            self.wait_ready(&engine)?;
            self.load(&engine, &self.images().probe.clone())
        })?;
        Ok(engine)
    }

    /// A kind-like node: Docker network `kind` on [`Bridge::Kind`]'s subnet, the node
    /// container on it running dockerd as its container runtime (`--bridge=none`: pods
    /// get their network from CNI, as on a real node), its pod network's CNI config and
    /// forwarding allowed for cni0 (the node's dockerd set the FORWARD policy to DROP).
    fn kind_node(&self) -> Result<Engine, DockerError> {
        let outer = self.engine();
        let node = outer.nested(KIND_NODE, &format!("{KIND_NODE}'s engine"));
        self.once("kind-node", || {
            self.load(&outer, &self.images().instance.clone())?;
            let kind = Bridge::Kind;
            let create = [
                "docker",
                "network",
                "create",
                "--driver=bridge",
                &format!("--subnet={}", kind.subnet()),
                &format!("--gateway={}", kind.gateway()),
                "--opt=com.docker.network.bridge.enable_ip_masquerade=true",
                KIND_NETWORK,
            ]
            .map(String::from);
            self.exec_ok(outer.command(create))?;
            self.start_engine_container(
                &outer,
                KIND_NODE,
                &EngineContainer::nested(KIND_NETWORK, images_bind()),
                &["--bridge=none".into()],
                None,
            )?;
            let script = format!(
                "mkdir -p /etc/cni/net.d && printf '%s' {conf} > {POD_CNI_CONF} && \
                 iptables -w -I FORWARD -i cni0 -j ACCEPT && \
                 iptables -w -I FORWARD -o cni0 -j ACCEPT",
                conf = sh_quote(&pod_cni_conf())
            );
            self.exec_ok(node.command(["sh".into(), "-c".into(), script]))?;
            self.load(&node, &self.images().instance.clone())
        })?;
        Ok(node)
    }

    /// A pod with a dind sidecar on the kind-like node: the pod's sandbox on cni0
    /// (attached by the CNI bridge plugin, as the kubelet's CNI does), the sidecar's
    /// dockerd in the sandbox's network namespace with its docker0 on
    /// [`Bridge::Sidecar`], and the probe image loaded into it. Returns its engine.
    pub fn k8s_sidecar(&self) -> Result<Engine, DockerError> {
        let node = self.kind_node()?;
        let sidecar = node.nested(DIND_SIDECAR, &format!("{DIND_SIDECAR}'s engine"));
        self.once("k8s-sidecar", || {
            let sandbox = [
                "docker",
                "run",
                "--detach",
                "--name",
                POD_SANDBOX,
                "--network",
                "none",
                // The pod's namespace routes for the sidecar's containers.
                "--sysctl",
                "net.ipv4.icmp_ratelimit=0",
                &self.images().instance,
                "sleep",
                "infinity",
            ]
            .map(String::from);
            self.exec_ok(node.command(sandbox))?;
            self.cni_attach(&node, POD_SANDBOX, POD_CNI_CONF)?;
            self.start_engine_container(
                &node,
                DIND_SIDECAR,
                &EngineContainer::dind()
                    .network(&format!("container:{POD_SANDBOX}"))
                    .bind(images_bind()),
                &[engine::bip(Bridge::Sidecar)],
                None,
            )?;
            self.load(&sidecar, &self.images().probe.clone())
        })?;
        Ok(sidecar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pod_network_is_the_pod_layer() {
        assert_eq!(
            pod_cni_conf(),
            r#"{"cniVersion":"0.4.0","name":"kindnet","type":"bridge","bridge":"cni0","isGateway":true,"ipMasq":true,"ipam":{"type":"host-local","subnet":"10.244.0.0/24","routes":[{"dst":"0.0.0.0/0"}]}}"#
        );
    }
}
