//! The IIIF gateway: IIIF Image API 3.0 and 2.1 in front of stock iipsrv 1.1.
//!
//! Components, in request order:
//! - [`routes`]: which endpoint a path names (versioned, unversioned, unknown);
//! - the pure IIIF core, crate [`iiif`]: parsing, planning, canonical forms, info.json;
//! - [`app`]: the request logic, free of Pingora types; [`reply`] is its response value;
//! - [`facts`]: image facts per identifier, in memory, fetched once;
//! - [`backend`]: iipsrv as the gateway asks it, over the [`fcgi`] pool;
//! - [`render`]: what iipsrv 1.1 cannot do (PNG, GIF, WebP, TIFF, arbitrary rotation);
//! - [`public_url`]: the public origin of ids and links;
//! - [`service`] and [`admin`]: the Pingora listeners (public IIIF, admin metrics/health);
//! - [`config`] and [`metrics`].

pub mod admin;
pub mod app;
pub mod backend;
pub mod config;
pub mod facts;
pub mod fcgi;
pub mod metrics;
pub mod public_url;
pub mod redirects;
pub mod render;
pub mod reply;
pub mod routes;
pub mod service;
