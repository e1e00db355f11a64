//! The control endpoints on the data port: Palisade's token issuer (`/oauth/token`, OIDC
//! discovery, the key set), the owner self-service API (`/manage/v1`) and the web console
//! (`/console`).

pub(crate) mod console;
pub(crate) mod health;
pub(crate) mod impact;
pub(crate) mod manage;
pub(crate) mod oauth;
pub(crate) mod timeline;
