//! The control endpoints on the data port: Palisade's token issuer (`/oauth/token`, OIDC
//! discovery, the key set) and the owner self-service API (`/manage/v1`).

pub(crate) mod impact;
pub(crate) mod manage;
pub(crate) mod oauth;
