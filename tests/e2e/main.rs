//! End-to-end tests: real iipsrv 1.1 processes, the real gateway binary, a real HTTP client.
//!
//! Each test starts its own stack on free loopback ports (see `support`), so tests can kill
//! processes without disturbing each other.

mod support;

mod api;
mod budget;
mod caching;
mod hostile;
mod masters;
mod redirects;
mod redirects_admin;
mod request_log;
mod robustness;
mod security;
