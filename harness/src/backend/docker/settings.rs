//! The settings of a container that runs a Docker Engine, as one value with two
//! renderings: `docker run` flags (for the engines nested inside a simulated instance,
//! started by the `docker` CLI there) and a bollard [`HostConfig`] (for the instance
//! container, created through the machine's Engine API).

use bollard::models::HostConfig;

/// What a container that runs dockerd is given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EngineContainer {
    /// `--network`; `None`: the engine's default (its bridge).
    pub network: Option<String>,
    /// `--cap-add`.
    pub cap_add: Vec<String>,
    /// `--cap-drop`.
    pub cap_drop: Vec<String>,
    /// `--security-opt` values the engine sees as they are (`seccomp=unconfined`, ...).
    pub security_opt: Vec<String>,
    /// `--security-opt=systempaths=unconfined`: /proc and /sys neither masked nor
    /// read-only (the CLI turns it into empty `MaskedPaths` and `ReadonlyPaths`).
    pub systempaths_unconfined: bool,
    /// `--device-cgroup-rule`.
    pub device_cgroup_rules: Vec<String>,
    /// `--tmpfs`: paths mounted as tmpfs, without options.
    pub tmpfs: Vec<String>,
    /// `--sysctl`: namespaced sysctls, `(key, value)`.
    pub sysctls: Vec<(String, String)>,
    /// `--volume`: `source:target[:options]` bind mounts.
    pub binds: Vec<String>,
    /// `--init`: Docker's init as PID 1, reaping orphans.
    pub init: bool,
}

impl EngineContainer {
    /// What makes a container able to run dockerd. `--privileged` is what Earthly and
    /// every docker-in-docker guide use; it grants every capability the engine knows,
    /// and fails where the engine's own bounding set lacks one (on this kind of machine
    /// `CAP_SYS_RESOURCE`: "unable to apply caps"). So: every capability but that one,
    /// no seccomp or AppArmor confinement, /proc and /sys unmasked, every device, and
    /// `/var/lib/docker` on tmpfs (overlay2 cannot sit on overlayfs). The network is
    /// what is measured, and it is the same as a privileged container's.
    pub(crate) fn dind() -> EngineContainer {
        EngineContainer {
            network: None,
            cap_add: vec!["ALL".into()],
            cap_drop: vec!["SYS_RESOURCE".into()],
            security_opt: vec!["seccomp=unconfined".into(), "apparmor=unconfined".into()],
            systempaths_unconfined: true,
            device_cgroup_rules: vec!["a *:* rwm".into()],
            tmpfs: vec!["/var/lib/docker".into()],
            sysctls: Vec::new(),
            binds: Vec::new(),
            init: false,
        }
    }

    /// The simulated instance container: no network (its one link, to the mock, is made
    /// by the harness), the image tars bound by `images` (`source:target:ro`), and an
    /// init reaping what the instance's engine leaves behind. Its namespace gets
    /// `icmp_ratelimit=0` from the harness when the link is made (see
    /// [`crate::backend::netns::NetnsRealisation::attach`]), not from here.
    pub(crate) fn instance(images: String) -> EngineContainer {
        EngineContainer::dind().network("none").bind(images).init()
    }

    /// A container running an engine nested in the instance (earthly-buildkitd, Earthly
    /// `WITH DOCKER`), on network `mode`, the image tars bound by `images`. Routers answer
    /// TTL probes at once (see the netns backend's routers), so ICMP is not rate-limited.
    pub(crate) fn nested(mode: &str, images: String) -> EngineContainer {
        EngineContainer::dind()
            .network(mode)
            .sysctl("net.ipv4.icmp_ratelimit", "0")
            .bind(images)
    }

    /// On network `mode` (`none`, `bridge`, ...).
    pub(crate) fn network(mut self, mode: &str) -> EngineContainer {
        self.network = Some(mode.into());
        self
    }

    /// With `sysctl` set to `value` in the container's namespaces.
    pub(crate) fn sysctl(mut self, sysctl: &str, value: &str) -> EngineContainer {
        self.sysctls.push((sysctl.into(), value.into()));
        self
    }

    /// With the bind mount `source:target[:options]`.
    pub(crate) fn bind(mut self, bind: String) -> EngineContainer {
        self.binds.push(bind);
        self
    }

    /// With Docker's init as PID 1.
    pub(crate) fn init(mut self) -> EngineContainer {
        self.init = true;
        self
    }

    /// The `docker run` flags, each as one `--flag=value` argument.
    pub(crate) fn to_cli_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        flags.extend(self.network.iter().map(|n| format!("--network={n}")));
        flags.extend(self.cap_add.iter().map(|c| format!("--cap-add={c}")));
        flags.extend(self.cap_drop.iter().map(|c| format!("--cap-drop={c}")));
        flags.extend(
            self.security_opt
                .iter()
                .map(|o| format!("--security-opt={o}")),
        );
        if self.systempaths_unconfined {
            flags.push("--security-opt=systempaths=unconfined".into());
        }
        flags.extend(
            self.device_cgroup_rules
                .iter()
                .map(|r| format!("--device-cgroup-rule={r}")),
        );
        flags.extend(self.tmpfs.iter().map(|t| format!("--tmpfs={t}")));
        flags.extend(
            self.sysctls
                .iter()
                .map(|(k, v)| format!("--sysctl={k}={v}")),
        );
        flags.extend(self.binds.iter().map(|b| format!("--volume={b}")));
        if self.init {
            flags.push("--init".into());
        }
        flags
    }

    /// The Engine API's host configuration, as `docker run` with
    /// [`EngineContainer::to_cli_flags`] would send it.
    pub(crate) fn to_host_config(&self) -> HostConfig {
        let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        HostConfig {
            network_mode: self.network.clone(),
            cap_add: list(&self.cap_add),
            cap_drop: list(&self.cap_drop),
            security_opt: list(&self.security_opt),
            masked_paths: self.systempaths_unconfined.then(Vec::new),
            readonly_paths: self.systempaths_unconfined.then(Vec::new),
            device_cgroup_rules: list(&self.device_cgroup_rules),
            tmpfs: (!self.tmpfs.is_empty()).then(|| {
                self.tmpfs
                    .iter()
                    .map(|t| (t.clone(), String::new()))
                    .collect()
            }),
            sysctls: (!self.sysctls.is_empty()).then(|| self.sysctls.iter().cloned().collect()),
            binds: list(&self.binds),
            init: self.init.then_some(true),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// What the `docker` CLI's `run` sends as `HostConfig` for these flags (its
    /// `parse.go`): each flag appends to its field; `systempaths=unconfined` becomes
    /// empty masked and read-only path lists; `--tmpfs PATH[:OPTS]` and
    /// `--sysctl KEY=VALUE` become maps.
    fn docker_run_host_config(flags: &[String]) -> HostConfig {
        fn push(field: &mut Option<Vec<String>>, value: &str) {
            field.get_or_insert_with(Vec::new).push(value.to_string());
        }
        let mut config = HostConfig::default();
        for flag in flags {
            let (name, value) = flag.split_once('=').unwrap_or((flag, ""));
            match name {
                "--network" => config.network_mode = Some(value.into()),
                "--cap-add" => push(&mut config.cap_add, value),
                "--cap-drop" => push(&mut config.cap_drop, value),
                "--security-opt" if value == "systempaths=unconfined" => {
                    config.masked_paths = Some(Vec::new());
                    config.readonly_paths = Some(Vec::new());
                }
                "--security-opt" => push(&mut config.security_opt, value),
                "--device-cgroup-rule" => push(&mut config.device_cgroup_rules, value),
                "--tmpfs" => {
                    let (path, options) = value.split_once(':').unwrap_or((value, ""));
                    config
                        .tmpfs
                        .get_or_insert_with(HashMap::new)
                        .insert(path.into(), options.into());
                }
                "--sysctl" => {
                    let (key, value) = value.split_once('=').expect("KEY=VALUE");
                    config
                        .sysctls
                        .get_or_insert_with(HashMap::new)
                        .insert(key.into(), value.into());
                }
                "--volume" => push(&mut config.binds, value),
                "--init" => config.init = Some(true),
                other => panic!("no mapping for {other}"),
            }
        }
        config
    }

    fn examples() -> Vec<EngineContainer> {
        vec![
            EngineContainer::default(),
            EngineContainer::dind(),
            EngineContainer::instance("/var/cache/t:/images:ro".into()),
            EngineContainer::nested("none", "/images:/images:ro".into()),
            EngineContainer::nested("bridge", "/images:/images:ro".into()),
            EngineContainer::dind()
                .network("none")
                .bind("/a:/b:ro".into())
                .init(),
            EngineContainer::dind()
                .network("bridge")
                .sysctl("net.ipv4.icmp_ratelimit", "0")
                .sysctl("net.ipv4.ip_forward", "1")
                .bind("/images:/images:ro".into())
                .bind("/c:/d".into()),
        ]
    }

    #[test]
    fn both_renderings_agree_field_by_field() {
        for settings in examples() {
            let flags = settings.to_cli_flags();
            assert_eq!(
                docker_run_host_config(&flags),
                settings.to_host_config(),
                "{flags:?}"
            );
        }
    }

    #[test]
    fn every_field_is_rendered() {
        let settings = examples().pop().unwrap();
        let config = settings.to_host_config();
        assert_eq!(config.network_mode.as_deref(), Some("bridge"));
        assert_eq!(config.sysctls.as_ref().map(HashMap::len), Some(2));
        assert_eq!(config.binds.as_ref().map(Vec::len), Some(2));
        let flags = settings.to_cli_flags();
        assert!(flags.contains(&"--sysctl=net.ipv4.icmp_ratelimit=0".to_string()));
        assert!(flags.contains(&"--security-opt=systempaths=unconfined".to_string()));
        assert!(!flags.contains(&"--init".to_string()));
        let instance = EngineContainer::instance("/a:/b:ro".into());
        assert!(instance.to_cli_flags().contains(&"--init".to_string()));
    }

    /// The instance container's settings as they were written out before this type.
    #[test]
    fn the_instance_gets_what_it_got() {
        let bind = "/var/cache/imds-harness/image-tars:/images:ro";
        let before = HostConfig {
            network_mode: Some("none".into()),
            cap_add: Some(vec!["ALL".into()]),
            cap_drop: Some(vec!["SYS_RESOURCE".into()]),
            security_opt: Some(vec![
                "seccomp=unconfined".into(),
                "apparmor=unconfined".into(),
            ]),
            masked_paths: Some(Vec::new()),
            readonly_paths: Some(Vec::new()),
            device_cgroup_rules: Some(vec!["a *:* rwm".into()]),
            tmpfs: Some(
                [("/var/lib/docker".to_string(), String::new())]
                    .into_iter()
                    .collect(),
            ),
            binds: Some(vec![bind.to_string()]),
            init: Some(true),
            ..Default::default()
        };
        assert_eq!(
            EngineContainer::instance(bind.into()).to_host_config(),
            before
        );
    }

    /// The nested engines' `docker run` flags as they were written out before this type
    /// (`--network X` was two arguments then).
    #[test]
    fn nested_engines_get_what_they_got() {
        for network in ["bridge", "none"] {
            let mut before: Vec<String> = [
                "--cap-add=ALL",
                "--cap-drop=SYS_RESOURCE",
                "--security-opt=seccomp=unconfined",
                "--security-opt=apparmor=unconfined",
                "--security-opt=systempaths=unconfined",
                "--device-cgroup-rule=a *:* rwm",
                "--tmpfs=/var/lib/docker",
                "--sysctl=net.ipv4.icmp_ratelimit=0",
                "--volume=/images:/images:ro",
            ]
            .map(String::from)
            .into();
            before.insert(0, format!("--network={network}"));
            let now = EngineContainer::nested(network, "/images:/images:ro".into());
            assert_eq!(now.to_cli_flags(), before);
        }
    }
}
