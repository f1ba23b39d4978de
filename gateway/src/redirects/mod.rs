//! The gateway's side of the ID archive (crate `idarchive`, see `docs/redirects.md`): the cached
//! lookup on the request path. The store, its rules and the admin CLI are `idarchive`'s; the
//! admin HTTP API is `admin::redirects`.

pub mod lookup;
