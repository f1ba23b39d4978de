//! The request logic of the public IIIF listener, in the order of the architecture's flow:
//! route → parse → redirect? → image facts → plan → iipsrv → post-process → headers.
//!
//! Nothing here knows Pingora: [`Gateway::handle`] takes an [`Incoming`] request and returns a
//! [`Reply`]. `service.rs` is the thin adapter between the two.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use iiif::{
    Capabilities, Format, Identifier, ImageRequest, InfoOptions, Plan, Quality, Route, Version,
};

use crate::backend::Iipsrv;
use crate::config::GatewayConfig;
use crate::facts::{FactsCache, ImageRecord, Lookup};
use crate::fcgi::BackendPool;
use crate::metrics::Metrics;
use crate::public_url::{OriginHeaders, PublicOrigin};
use crate::redirects::lookup::{self as redirect_lookup, RedirectLookup};
use crate::render;
use crate::reply::{Failure, Reply};
use crate::routes::{self, Endpoint};

/// How many identifiers' facts are kept in memory.
const FACTS_CAPACITY: usize = 100_000;

/// One request as the gateway needs it: method, raw path (no query string) and a few headers.
#[derive(Debug, Default, Clone, Copy)]
pub struct Incoming<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub peer: Option<IpAddr>,
    pub accept: Option<&'a str>,
    pub origin_headers: OriginHeaders<'a>,
    pub preflight_headers: Option<&'a str>,
}

/// The reply plus the labels it is counted under.
#[derive(Debug)]
pub struct Outcome {
    pub reply: Reply,
    pub version: &'static str,
    pub kind: &'static str,
}

/// The gateway's shared state: configuration, iipsrv pool, caches and metrics.
pub struct Gateway {
    config: GatewayConfig,
    origin: PublicOrigin,
    iipsrv: Iipsrv,
    facts: FactsCache,
    caps: Capabilities,
    info_options: InfoOptions,
    /// The ID archive; `None` when `gateway.redirects` is absent (no lookup at all).
    redirects: Option<Arc<RedirectLookup>>,
    pub pool: Arc<BackendPool>,
    pub metrics: Arc<Metrics>,
}

impl Gateway {
    pub fn new(config: GatewayConfig, pool: Arc<BackendPool>, metrics: Arc<Metrics>) -> Self {
        let caps = Capabilities {
            formats: vec![
                Format::Jpg,
                Format::Png,
                Format::Gif,
                Format::Webp,
                Format::Tif,
            ],
            arbitrary_rotation: true,
        };
        let mut limits = config.limits;
        // iipsrv distorts any output beyond its MAX_CVT, so never promise more than it can do.
        limits.max_width = limits.max_width.min(config.backend.max_cvt);
        limits.max_height = limits.max_height.min(config.backend.max_cvt);
        let info_options = InfoOptions {
            limits,
            caps: caps.clone(),
            link_headers: true,
            rights: config.rights.clone(),
        };
        Gateway {
            origin: PublicOrigin::new(
                config.public_base_url.clone(),
                config.trusted_proxies.clone(),
                config.listen,
            ),
            iipsrv: Iipsrv::new(pool.clone(), metrics.clone()),
            facts: FactsCache::new(config.facts_ttl, FACTS_CAPACITY),
            redirects: config
                .redirects
                .as_ref()
                .map(|r| Arc::new(RedirectLookup::from_config(r, metrics.clone()))),
            caps,
            info_options,
            config,
            pool,
            metrics,
        }
    }

    /// Answers one request. Never fails: every problem becomes an IIIF-style error reply.
    pub async fn handle(&self, request: &Incoming<'_>) -> Outcome {
        let (version, kind, result) = self.dispatch(request).await;
        let reply = result
            .unwrap_or_else(|failure| Reply::failure(&failure, &self.config.cache_control.error));
        Outcome {
            reply: reply.finish(),
            version: version.map_or("none", version_label),
            kind,
        }
    }

    async fn dispatch(
        &self,
        request: &Incoming<'_>,
    ) -> (Option<Version>, &'static str, Result<Reply, Failure>) {
        match request.method {
            "GET" | "HEAD" => {}
            "OPTIONS" => {
                return (
                    None,
                    "preflight",
                    Ok(Reply::preflight(request.preflight_headers)),
                )
            }
            _ => return (None, "other", Err(Failure::new(405, "method not allowed"))),
        }
        let (version, rest) = match routes::classify(&self.config.prefix, request.path) {
            Endpoint::Unknown => return (None, "other", Err(Failure::new(404, "not found"))),
            Endpoint::Unversioned { rest } => {
                return (
                    None,
                    "redirect",
                    Ok(self.latest_version_redirect(request, rest)),
                )
            }
            Endpoint::Versioned { version, rest } => (version, rest),
        };
        let route = match iiif::parse_route(version, rest) {
            Ok(route) => route,
            Err(error) => return (Some(version), "invalid", Err(error.into())),
        };
        let base = self.version_base(request, version);
        if let Some((kind, reply)) = self.retired(&route, rest, &base).await {
            return (Some(version), kind, Ok(reply));
        }
        let (kind, result) = match route {
            Route::Base { identifier } => ("base", Ok(self.base_redirect(&base, &identifier))),
            Route::Info { identifier } => (
                "info",
                self.info(version, &identifier, &base, request.accept).await,
            ),
            Route::Image {
                identifier,
                request,
            } => (
                "image",
                self.image(version, &identifier, &request, &base).await,
            ),
        };
        (Some(version), kind, result)
    }

    /// The lookup of the ID archive, for the background work that keeps it fresh.
    pub fn redirect_lookup(&self) -> Option<Arc<RedirectLookup>> {
        self.redirects.clone()
    }

    /// The answer for a retired identifier, with its metrics kind: a redirect to the same path
    /// with the current identifier, or 410 Gone. `None` (serve the request) when the identifier
    /// is not retired, when there is no archive, and when the archive cannot be asked in time.
    ///
    /// `rest` is the path after the version, still percent-encoded; everything after the
    /// identifier is kept byte for byte.
    async fn retired(
        &self,
        route: &Route,
        rest: &str,
        base: &str,
    ) -> Option<(&'static str, Reply)> {
        let lookup = self.redirects.as_ref()?;
        let identifier = route.identifier();
        // The parser takes the identifier from the start of `rest`, as the client wrote it.
        let Some(tail) = rest.strip_prefix(identifier.raw()) else {
            debug_assert!(false, "{rest:?} does not start with {:?}", identifier.raw());
            return None;
        };
        let redirect = match lookup.lookup(identifier.decoded()).await {
            redirect_lookup::Lookup::Redirect(redirect) => redirect,
            redirect_lookup::Lookup::NotRedirected | redirect_lookup::Lookup::Unknown => {
                return None
            }
        };
        self.metrics
            .redirects
            .with_label_values(&[redirect.kind()])
            .inc();
        let settings = self.config.redirects.as_ref()?;
        let cache_control = &self.config.cache_control.redirect;
        let (status, target) = match &redirect {
            redirect_lookup::Redirect::Moved { target } => (settings.permanent_status, target),
            redirect_lookup::Redirect::Temporary { target } => (settings.temporary_status, target),
            redirect_lookup::Redirect::Gone => {
                let gone = Failure::new(410, "this image has been withdrawn");
                return Some(("gone", Reply::failure(&gone, cache_control)));
            }
        };
        let location = format!("{base}/{}{tail}", redirect_lookup::encode_segment(target));
        Some(("redirect", Reply::redirect(status, location, cache_control)))
    }

    /// `{origin}{prefix}/{version}`: what every public URI of one API version starts with.
    fn version_base(&self, request: &Incoming<'_>, version: Version) -> String {
        let origin = self.origin.resolve(request.peer, request.origin_headers);
        format!("{origin}{}/{}", self.config.prefix, version_label(version))
    }

    /// `{prefix}/{rest}` → the same path under the latest (or the `Accept`-negotiated) version.
    fn latest_version_redirect(&self, request: &Incoming<'_>, rest: &str) -> Reply {
        let version = if routes::is_info_path(rest) {
            iiif::version_from_accept(request.accept).unwrap_or(self.config.default_version)
        } else {
            self.config.default_version
        };
        let location = format!("{}/{rest}", self.version_base(request, version));
        Reply::redirect(302, location, &self.config.cache_control.redirect).header("Vary", "Accept")
    }

    /// The base URI redirects to info.json (IIIF `baseUriRedirect`).
    fn base_redirect(&self, base: &str, identifier: &Identifier) -> Reply {
        let location = format!("{base}/{}/info.json", identifier.public_encoded());
        Reply::redirect(303, location, &self.config.cache_control.redirect)
    }

    async fn record(&self, identifier: &Identifier) -> Result<Arc<ImageRecord>, Failure> {
        let (record, lookup) = self
            .facts
            .get(identifier.decoded(), || async {
                let fetched = self.iipsrv.info(identifier).await?;
                Ok(ImageRecord {
                    facts: fetched.info.facts(),
                    info: fetched.info,
                    last_modified: fetched.last_modified,
                })
            })
            .await?;
        let label = match lookup {
            Lookup::Hit => "hit",
            Lookup::Miss => "miss",
        };
        self.metrics.facts_lookups.with_label_values(&[label]).inc();
        Ok(record)
    }

    async fn info(
        &self,
        version: Version,
        identifier: &Identifier,
        base: &str,
        accept: Option<&str>,
    ) -> Result<Reply, Failure> {
        let record = self.record(identifier).await?;
        let id = format!("{base}/{}", identifier.public_encoded());
        let document = match version {
            Version::V3 => iiif::info_v3(&record.info, &id, &self.info_options),
            Version::V2 => iiif::info_v2(&record.info, &id, &self.info_options),
        };
        let body = serde_json::to_vec_pretty(&document)
            .map_err(|e| Failure::new(500, format!("info.json encoding failed: {e}")))?;
        let reply = Reply::with_body(200, iiif::info_content_type(version, accept), body)
            .header("Vary", "Accept")
            .header("Link", iiif::profile_link_header(version))
            .header("Cache-Control", self.config.cache_control.info.clone());
        Ok(with_last_modified(reply, &record))
    }

    async fn image(
        &self,
        version: Version,
        identifier: &Identifier,
        request: &ImageRequest,
        base: &str,
    ) -> Result<Reply, Failure> {
        let record = self.record(identifier).await?;
        let plan = iiif::plan(
            version,
            request,
            &record.facts,
            &self.info_options.limits,
            &self.caps,
        )?;
        let jpeg = self.backend_pixels(identifier, &plan).await?;
        let body = if plan.post.is_passthrough() {
            jpeg
        } else {
            self.render(jpeg, &plan).await?
        };
        let canonical = format!(
            "<{base}/{}/{}>;rel=\"canonical\"",
            identifier.public_encoded(),
            iiif::canonical_path(version, &plan, &record.facts)
        );
        let reply = Reply::with_body(200, plan.format.mime(), body)
            .header(
                "Link",
                format!("{}, {canonical}", iiif::profile_link_header(version)),
            )
            .header("Cache-Control", self.config.cache_control.image.clone());
        Ok(with_last_modified(reply, &record))
    }

    /// Asks iipsrv for the plan's pixels and checks it delivered the size it was asked for.
    ///
    /// The plan always asks for an exact `w,h`, which iipsrv gets right; a JPEG of another size
    /// is counted and logged as an iipsrv fault, and passed on as it is.
    async fn backend_pixels(&self, identifier: &Identifier, plan: &Plan) -> Result<Bytes, Failure> {
        let fetched = self.iipsrv.image(identifier, &plan.backend).await?;
        let expected = plan.backend_output_size();
        let actual = render::jpeg_dimensions(&fetched.jpeg);
        if actual != Some(expected) {
            self.metrics.backend_size_mismatches.inc();
            log::warn!(
                "iipsrv returned {actual:?} instead of {expected:?} for {:?} {}",
                identifier.decoded(),
                plan.backend.path()
            );
        }
        Ok(fetched.jpeg)
    }

    /// Runs the gateway-side steps (rotation, transcoding) on a blocking thread.
    async fn render(&self, jpeg: Bytes, plan: &Plan) -> Result<Bytes, Failure> {
        let spec = render_spec(plan, self.config.jpeg_quality);
        let format = plan.format.extension();
        let started = Instant::now();
        let rendered = tokio::task::spawn_blocking(move || render::render(&jpeg, &spec))
            .await
            .map_err(|e| Failure::new(500, format!("render task failed: {e}")))?
            .map_err(|e| {
                log::error!("render failed: {e}");
                Failure::new(500, "the image could not be converted")
            })?;
        self.metrics
            .render_duration
            .with_label_values(&[format])
            .observe(started.elapsed().as_secs_f64());
        Ok(Bytes::from(rendered))
    }
}

fn version_label(version: Version) -> &'static str {
    match version {
        Version::V2 => "2",
        Version::V3 => "3",
    }
}

fn with_last_modified(reply: Reply, record: &ImageRecord) -> Reply {
    match &record.last_modified {
        Some(value) => reply.header("Last-Modified", value.clone()),
        None => reply,
    }
}

/// Translates the planner's post-processing steps into the renderer's terms.
fn render_spec(plan: &Plan, jpeg_quality: u8) -> render::RenderSpec {
    let rotation = plan.post.rotate;
    render::RenderSpec {
        mirror: rotation.is_some_and(|r| r.mirror),
        degrees: rotation.map_or(0.0, |r| r.degrees),
        tone: match plan.quality {
            Quality::Gray => render::Tone::Gray,
            Quality::Bitonal => render::Tone::Bitonal,
            Quality::Default | Quality::Color => render::Tone::AsIs,
        },
        format: match plan.post.encode {
            Format::Png => render::OutputFormat::Png,
            Format::Gif => render::OutputFormat::Gif,
            Format::Webp => render::OutputFormat::Webp,
            Format::Tif => render::OutputFormat::Tiff,
            _ => render::OutputFormat::Jpeg,
        },
        jpeg_quality,
    }
}
