//! Where the mock AWS side serves inside a simulated instance, on every backend: IMDS
//! at 169.254.169.254:80 as on EC2, STS and EC2 on other ports of the same address,
//! reached through the same routing chain (only the token response is TTL-limited).
//! The ports are the mock's own (`imds_mock::IMDS_PORT` and its siblings).

/// IMDS as a client inside the topology names it: the link-local address, port 80,
/// as on EC2.
pub const IMDS_URL: &str = "http://169.254.169.254/";
/// The mock STS as a client inside the topology names it: the IMDS address, the
/// mock's `STS_PORT`.
pub const STS_URL: &str = "http://169.254.169.254:8080/";
/// The mock EC2 API as a client inside the topology names it: the IMDS address, the
/// mock's `EC2_PORT`.
pub const EC2_URL: &str = "http://169.254.169.254:8081/";

#[cfg(test)]
mod tests {
    use imds_mock::{EC2_PORT, IMDS_PORT, STS_PORT};

    use super::*;

    #[test]
    fn the_urls_name_the_mocks_ports() {
        assert_eq!(IMDS_PORT, 80, "IMDS_URL leaves the port out: 80, as on EC2");
        assert_eq!(IMDS_URL, "http://169.254.169.254/");
        assert_eq!(STS_URL, format!("http://169.254.169.254:{STS_PORT}/"));
        assert_eq!(EC2_URL, format!("http://169.254.169.254:{EC2_PORT}/"));
    }
}
