//! The IIIF gateway: IIIF Image API 3.0 and 2.1 in front of stock iipsrv 1.1.
//!
//! Components, in request order:
//! - [`routes`]: which endpoint a path names (versioned, unversioned, unknown);
//! - the pure IIIF core, crate [`iiif`]: parsing, planning, canonical forms, info.json;
//! - [`app`]: the request logic, free of Pingora types; [`reply`] is its response value;
//! - [`error`]: the request path's one error type, and the one place it becomes a status;
//! - [`source`]: which file iipsrv reads for an identifier, and that image's facts;
//! - [`masters`]: the access masters, fetched from S3 onto the cache mount by `lazyfetch`;
//! - [`facts`]: image facts per identifier, in memory, fetched once;
//! - [`conditional`] and [`derivatives`]: 304 revalidation and the on-disk derivative cache,
//!   with `coalesce::SingleFlight` so that identical concurrent misses render once;
//! - [`backend`]: iipsrv as the gateway asks it, over the [`fcgi`] pool;
//! - [`render`]: what iipsrv 1.1 cannot do (PNG, GIF, WebP, TIFF, arbitrary rotation);
//! - [`public_url`]: the public origin of ids and links;
//! - [`redirects`]: the cached lookup of the ID archive (crate `idarchive`);
//! - [`service`] and [`admin`]: the Pingora listeners (public IIIF; admin metrics, health and
//!   the admin APIs for redirects and images);
//! - [`config`] and [`metrics`].

// The gateway is an application: its library exists for its binary and its tests, not for
// other crates, so `missing_docs` (on for the workspace's library crates) is relaxed here.
// Its configuration keys are documented for operators in deploy/gateway.example.yaml.
#![allow(missing_docs)]

pub mod admin;
pub mod admission;
pub mod app;
pub mod backend;
pub mod budget;
pub mod conditional;
pub mod config;
pub mod connections;
pub mod derivatives;
pub mod error;
pub mod events;
pub mod facts;
pub mod fcgi;
pub mod forwarded;
pub mod masters;
pub mod metrics;
pub mod public_url;
pub mod redirects;
pub mod render;
pub mod reply;
pub mod request_log;
pub mod room;
pub mod routes;
pub mod service;
pub mod source;
