//! AWS Organizations around the mock's account: the organization (its accounts, their
//! regions and EC2, the role each lets the management account assume) and the service
//! that lists it.

pub(crate) mod error;
pub(crate) mod model;
pub(crate) mod page_token;
pub(crate) mod service;
