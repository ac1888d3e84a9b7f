//! Where the mock AWS side serves inside a simulated instance, on every backend: IMDS
//! at 169.254.169.254:80 as on EC2, STS and EC2 on other ports of the same address,
//! reached through the same routing chain (only the token response is TTL-limited).

/// Ports of the mock's services in the mock namespace.
pub const IMDS_PORT: u16 = 80;
pub(crate) const STS_PORT: u16 = 8080;
pub(crate) const EC2_PORT: u16 = 8081;

/// The endpoints as a client inside the topology names them.
pub const IMDS_URL: &str = "http://169.254.169.254/";
pub const STS_URL: &str = "http://169.254.169.254:8080/";
pub const EC2_URL: &str = "http://169.254.169.254:8081/";
