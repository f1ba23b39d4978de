//! A load generator that reproduces the IIIF image-server benchmark of the design report (section 3.2 and
//! Appendix 2): virtual users with keep-alive connections request a fixed mix of derivatives of images in three
//! source-size classes, for a fixed time, and the result is the report's table per class, with exact
//! percentiles, failure kinds, ratios between targets, memory peaks and charts.
//!
//! # Layout
//!
//! Pure parts (no I/O, unit- and property-tested):
//!
//! * [`dataset`]: the source-size classes and identifier lists.
//! * [`mix`]: the derivative classes and their weights.
//! * [`tile`]: viewer-style tile geometry.
//! * [`shape`]: a request independent of syntax, and its IIIF 2.1 / 3.0 path.
//! * [`schedule`]: the seeded request sequence of one user.
//! * [`target`]: `NAME=URL` targets.
//! * [`sample`], [`stats`], [`table`], [`timeline`]: recorded requests, exact percentiles, the Appendix-2 table
//!   (Markdown, CSV, check), per-second series.
//! * [`svg`], [`charts`]: hand-written SVG charts.
//! * [`report`]: rows, failure breakdown, ratios, and the files of the output directory.
//! * [`wrk`]: the rows and the report of the wrk side-by-side (`loadtest/wrk/compare.sh`).
//!
//! I/O shells: [`client`] (one keep-alive HTTP/1.1 connection per user and target), [`engine`] (users, phases,
//! warm-up and window), [`rss`] (`/proc` memory sampling), [`cpu`] (the generator's own CPU time), [`nofile`] (the open-file limit), [`cli`] (arguments
//! to a validated config) and [`app`] (the run from start to finish);
//! [`wrk_tool`] (`loadtest wrk …`: measuring wrk runs and the servers' CPU for `compare.sh`).

pub mod app;
pub mod charts;
pub mod cli;
pub mod client;
pub mod cpu;
pub mod dataset;
pub mod engine;
pub mod mix;
pub mod nofile;
pub mod report;
pub mod rss;
pub mod sample;
pub mod schedule;
pub mod shape;
pub mod stats;
pub mod svg;
pub mod table;
pub mod target;
pub mod tile;
pub mod timeline;
pub mod wrk;
pub mod wrk_tool;

#[cfg(test)]
mod test_server;
