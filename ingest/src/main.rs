//! `iiif-ingest`: the command-line shell over the `ingest` library.
fn main() {}
