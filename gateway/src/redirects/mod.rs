//! The ID archive of retired identifiers (see `docs/redirects.md`): its rules, its Redis store, and
//! the admin tools that edit it.

pub mod admin_api;
pub mod cli;
pub mod import;
pub mod lookup;
pub mod model;
pub mod store;
