//! Realises a [`Topology`](crate::topology::Topology) with Linux network namespaces.
//!
//! # Layout
//!
//! One realisation ([`NetnsRealisation`]) of a topology of depth N owns N + 2 namespaces,
//! all named `<prefix>-<suffix>` with a prefix `imdsh-<run>-<index>` unique per run
//! (`<run>`: 6 random hex digits per process) and per realisation (`<index>`):
//!
//! ```text
//!  <prefix>-m (mock IMDS)    <prefix>-h (EC2 host, depth 0)  <prefix>-1 (depth 1)       <prefix>-2 ...
//!  eth0 169.254.169.254/16 = eth0 169.254.0.1/16   (default via 169.254.0.254)
//!       169.254.0.254/16 (the host's gateway: forwards nothing)
//!  default via 169.254.0.1   docker0 172.17.0.1/16 (bridge)
//!                              `- veth1 =================== eth0 172.17.0.2/16
//!                            ip_forward=1                    default via 172.17.0.1
//!                            MASQUERADE -s 172.17.0.0/16     cni0 172.30.0.1/16 (bridge)
//!                                       ! -o docker0           `- veth2 ============== eth0 172.30.0.2/16
//!                                                            ip_forward=1, MASQUERADE  default via 172.30.0.1
//!
//!  a proxied layer instead: slirp4netns (or pasta) in the parent, started with
//!  `--netns-type=path /run/netns/<child> tap0`, serving the child's TAP device:
//!  tap0 10.0.2.100/24, default via 10.0.2.2 (pasta: the parent's address and routes)
//! ```
//!
//! - The mock namespace is exactly one link away from the host, as IMDS is on EC2: the
//!   host reaches [`IMDS_ADDR`](layout::IMDS_ADDR) on-link over its `eth0`
//!   (169.254.0.0/16), with no routing hop between them. The mock has a default route
//!   back via the host; as the host masquerades, replies go to 169.254.0.1 anyway. The
//!   host's default route goes to [`GATEWAY_ADDR`](layout::GATEWAY_ADDR), which the
//!   mock's namespace holds and where every packet to be forwarded is refused (ICMP net
//!   unreachable): like an EC2 host it has a default route (pasta copies it), and it
//!   leads nowhere.
//! - A routed layer i (1..=N, [`Topology::layers`]`[i-1]` is `Layer::Routed`): in the
//!   parent namespace (the host for i = 1, else `<prefix>-<i-1>`) a bridge named like
//!   the real one (`docker0`, `cni0`, `cni-podman0`, `br<i>`) holding the gateway
//!   address, a veth `veth<i>` from the bridge to the child `<prefix>-<i>`, whose end is
//!   `eth0` with the layer's member address and a default route via the gateway. The
//!   parent forwards (`net.ipv4.ip_forward=1` in that namespace) and runs `iptables -t
//!   nat -A POSTROUTING -s <subnet> ! -o <bridge> -j MASQUERADE`, as Docker and CNI's
//!   `ipMasq` do.
//! - A proxied layer (`Layer::Proxied`): the real slirp4netns or pasta runs in the
//!   parent and configures the child's TAP device ([`user_stack`]); it ends the child's
//!   connections and opens them anew from the parent.
//! - The leaf (where a probe runs) is `<prefix>-N`, or the host for depth 0. Bridges
//!   switch at layer 2 and NAT does not touch the TTL; only forwarding namespaces do,
//!   and a user-space stack sends what it relays with a TTL of its own, so a process in
//!   the leaf needs a hop limit >= 1 + the routed layers before the first proxied one.
//! - Every namespace has `lo` up. Nothing is created in, and no setting is changed in,
//!   the root network namespace: veths are created from inside the parent namespace
//!   (`ip -n <parent> link add ... peer name eth0 netns <child>`), commands that
//!   need a namespace run in a thread that entered it and verified that it did, and
//!   the stacks run through `ip netns exec <parent>`.
//!
//! # Cleanup
//!
//! A realisation removes its namespaces on `Drop` (including panic unwinding). For
//! Ctrl-C, the live prefixes of the process are kept in a [`Registry`]; the CLI's signal
//! handler calls [`remove_all_live`]. For runs that were killed, [`cleanup_stale`]
//! removes every `imdsh-` namespace whose run is gone (see [`crate::lifecycle`]). A
//! user-space stack is killed with its realisation; slirp4netns also exits when this
//! process does (its `--exit-fd`), and pasta when its namespace is removed.
//!
//! - [`namespace`]: one namespace: running commands and binding sockets in it.
//! - [`command`]: running `ip` and `iptables`, errors naming the command.
//! - [`realisation`]: a realised topology ([`NetnsRealisation`]).
//! - [`user_stack`]: slirp4netns and pasta for the proxied layers.
//! - [`reap`]: removing namespaces: this run's on Ctrl-C, killed runs' on `cleanup`.
//! - [`site`] and [`leaf`]: what the sweep uses: the mock inside a realisation, and the
//!   leaf namespace running this machine's programs.
//!
//! [`Registry`]: crate::lifecycle::Registry

mod command;
mod error;
mod layout;
mod leaf;
mod namespace;
mod realisation;
mod reap;
mod site;
mod user_stack;

pub use command::check_prerequisites;
pub use error::NetnsError;
pub use leaf::NamespaceLeaf;
pub use namespace::Namespace;
pub use realisation::NetnsRealisation;
pub use reap::{cleanup_stale, remove_all_live, Reaped};
pub(crate) use site::{start_cell_mock, start_mock};
pub use site::{NetnsLab, NetnsSite};

#[cfg(test)]
mod tests;
