//! The pure IIIF Image API core of the gateway: parsing, size arithmetic, canonical forms, iipsrv request plans
//! and info.json translation, for IIIF Image API 3.0 and 2.1.
//!
//! **Invariant:** this crate does no I/O. It never touches files, sockets, clocks or threads, so every rule in it
//! can be tested exhaustively and fuzzed.
//!
//! # Layout
//!
//! The request path, left to right:
//!
//! * [`route`]: classifies the path after `/iiif/{2|3}/` into image, info and base-URI requests, parsing from
//!   the right so identifiers may contain `/`.
//! * [`identifier`]: the identifier's public (raw) and decoded forms, safety rules and iipsrv encoding.
//! * `percent` (private): the one percent-decoding rule, for identifiers and for the parameters (IIIF §9: a
//!   client may encode `^`, `!`, `:` and `,`).
//! * [`region`], [`size`], [`rotation`], [`quality`], [`format`](mod@format): one module per URL segment, each with a strict
//!   `parse` and a `Display` that reads back to the same value; [`request`] ties the four together.
//! * `sizing` (private): the exact output size of a request and every size error IIIF defines.
//! * [`plan`](mod@plan): resolves a request against an image into a [`Plan`]: the exact output, the [`BackendRequest`] for
//!   iipsrv 1.1 (see [`backend`]) and the [`PostSteps`] the gateway performs afterwards. [`reshape`] holds the
//!   measured rule for iipsrv's crash on regions at the bottom and right edges, and the shift that avoids it.
//! * [`canonical`]: the canonical form of a plan, for `Link: rel="canonical"`.
//! * [`backend_info`]: reads iipsrv's own info.json into [`BackendInfo`] and [`ImageFacts`].
//! * [`info`]: builds the public 3.0 and 2.1 info.json documents.
//! * [`negotiate`]: info.json content types, version negotiation through `Accept`, and `Link` headers.
//!
//! Support: [`error`] ([`IiifError`], which carries its HTTP status), [`version`], [`limits`] ([`Limits`],
//! [`ImageFacts`]), [`capabilities`], [`geometry`] ([`PixelRect`]).
//!
//! # Example
//!
//! ```
//! use iiif::{backend_query, parse_backend_info, parse_route, plan, Capabilities, Limits, Route, Version};
//!
//! // iipsrv's info.json, fetched once per image and cached by the caller.
//! let backend = parse_backend_info(br#"{"width": 1000, "height": 750,
//!     "tiles": [{"width": 256, "height": 256, "scaleFactors": [1, 2, 4]}]}"#)?;
//! let facts = backend.facts();
//!
//! let Route::Image { identifier, request } = parse_route(Version::V3, "photo.tif/900,700,300,200/max/0/default.jpg")?
//! else {
//!     unreachable!("an image request")
//! };
//! let planned = plan(Version::V3, &request, &facts, &Limits::default(), &Capabilities::default())?;
//! // The region is clipped before iipsrv sees it, and the size is always exact.
//! let file = identifier.backend_encoded();
//! assert_eq!(backend_query(&file, &planned.backend), "IIIF=photo.tif/900,700,100,50/100,50/0/default.jpg");
//! assert!(planned.post.is_passthrough());
//! # Ok::<(), iiif::IiifError>(())
//! ```
//!
//! The behaviour follows `docs/iiif-reference.md` of the project (URL syntax §1, the v3 → iipsrv rewrite §1.4,
//! info.json §2, iipsrv 1.1's bugs §3.8 and the validator §4).

pub mod backend;
pub mod backend_info;
pub mod canonical;
pub mod capabilities;
pub mod error;
pub mod format;
pub mod geometry;
pub mod identifier;
pub mod info;
pub mod limits;
pub mod negotiate;
mod number;
mod percent;
pub mod plan;
pub mod quality;
pub mod region;
pub mod request;
pub mod reshape;
pub mod rotation;
pub mod route;
pub mod size;
mod sizing;
pub mod version;

pub use backend::{backend_query, BackendRequest};
pub use backend_info::{parse_backend_info, BackendInfo, TileSpec};
pub use canonical::canonical_path;
pub use capabilities::Capabilities;
pub use error::IiifError;
pub use format::Format;
pub use geometry::PixelRect;
pub use identifier::{encode_backend_file, Identifier};
pub use info::{info_v2, info_v3, InfoOptions};
pub use limits::{ConfinedUpscale, EffectiveLimits, ImageFacts, Limits};
pub use negotiate::{
    canonical_link_header, info_content_type, profile_link_header, profile_link_header_at_level,
    version_from_accept,
};
pub use plan::{plan, Plan, PostSteps};
pub use quality::Quality;
pub use region::Region;
pub use request::ImageRequest;
pub use reshape::{backend_level, crashes_iipsrv, shift_off_the_edge};
pub use rotation::Rotation;
pub use route::{parse_route, Route};
pub use size::{Size, SizeKind};
pub use version::Version;
