//! The mock's ports wherever they are fixed: inside a simulated instance (IMDS at
//! 169.254.169.254:80 as on EC2, STS and EC2 on other ports of the same address) and
//! inside the mock's container image.

/// Where IMDS listens, as on EC2.
pub const IMDS_PORT: u16 = 80;
/// Where STS listens.
pub const STS_PORT: u16 = 8080;
/// Where the EC2 API listens.
pub const EC2_PORT: u16 = 8081;
