//! The data port's layers, stacked in one place ([`crate::app`]), each reading and filling
//! the request context.

pub(crate) mod admit;
pub(crate) mod audit;
pub(crate) mod authn;
pub(crate) mod authz;
pub(crate) mod cors;
pub(crate) mod grpc_model;
pub(crate) mod rate;

pub use audit::AuditHandle;
