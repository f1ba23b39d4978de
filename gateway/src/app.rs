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

use crate::backend::{Iipsrv, ImageFile};
use crate::budget::{Body, RenderBudget, Reservation};
use crate::conditional::{Preconditions, Validators};
use crate::config::GatewayConfig;
use crate::derivatives::files::Removed;
use crate::derivatives::{body_etag, DerivativeCache, DerivativeKey};
use crate::error::Error;
use crate::facts::{FactsCache, ImageRecord};
use crate::fcgi::BackendPool;
use crate::masters::Masters;
use crate::metrics::Metrics;
use crate::public_url::{OriginHeaders, PublicOrigin};
use crate::redirects::lookup::{self as redirect_lookup, RedirectLookup};
use crate::render;
use crate::reply::Reply;
use crate::request_log::{self, RequestLog};
use crate::room::Room;
use crate::routes::{self, Endpoint};
use crate::source::{ImageSource, ImageSources};

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
    /// `If-None-Match` / `If-Modified-Since`.
    pub preconditions: Preconditions<'a>,
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
    iipsrv: Arc<Iipsrv>,
    sources: ImageSources,
    caps: Capabilities,
    info_options: InfoOptions,
    /// The ID archive; `None` when `gateway.redirects` is absent (no lookup at all).
    redirects: Option<Arc<RedirectLookup>>,
    /// The derivative cache; `None` when `gateway.cache` is absent.
    derivatives: Option<Arc<DerivativeCache>>,
    /// Where purges are announced to the other nodes (`{prefix}purge` on the archive's
    /// Redis); `None` without `gateway.redirects`.
    purges: Option<(redis::Client, String)>,
    /// Memory and workers for the gateway's own renders.
    budget: RenderBudget,
    /// The guard of the cache mount's room; `None` without `gateway.cache`.
    room: Option<Arc<Room>>,
    pub pool: Arc<BackendPool>,
    pub metrics: Arc<Metrics>,
    /// One line per request, written by the listener when the request ends.
    pub request_log: RequestLog,
    /// Set once the process has been told to stop: `/readyz` says so from then on.
    draining: std::sync::atomic::AtomicBool,
}

impl Gateway {
    pub fn new(config: GatewayConfig, pool: Arc<BackendPool>, metrics: Arc<Metrics>) -> Self {
        let caps = Capabilities {
            // What the renderer can encode, decided in one place (`output_format`).
            formats: Format::ALL
                .into_iter()
                .filter(|format| output_format(*format).is_some())
                .collect(),
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
        // One guard of the mount's room, told by masters and derivatives alike when it is full.
        let room = config
            .cache
            .as_ref()
            .map(|cache| Room::new(cache.clone(), metrics.registry()));
        let masters = config
            .masters
            .clone()
            .zip(config.cache.clone())
            .zip(room.clone())
            .map(|((masters, cache), room)| {
                Arc::new(Masters::new(
                    cache,
                    masters,
                    room,
                    metrics.registry().clone(),
                ))
            });
        let derivatives = config
            .cache
            .as_ref()
            .zip(config.derivatives.clone())
            .zip(room.clone())
            .map(|((cache, policy), room)| {
                DerivativeCache::new(cache, policy, room, metrics.registry())
            });
        let iipsrv = Arc::new(Iipsrv::new(
            pool.clone(),
            config.cost_thresholds,
            metrics.clone(),
        ));
        let sources = ImageSources::new(
            iipsrv.clone(),
            masters,
            FactsCache::new(config.facts_ttl, FACTS_CAPACITY),
            metrics.clone(),
        );
        Gateway {
            sources,
            derivatives,
            room,
            budget: RenderBudget::new(config.render, metrics.render_budget.clone()),
            origin: PublicOrigin::new(
                config.public_base_url.clone(),
                config.trusted_proxies.clone(),
                config.listen,
            ),
            iipsrv,
            redirects: config
                .redirects
                .as_ref()
                .map(|r| Arc::new(RedirectLookup::from_config(r, metrics.clone()))),
            // The URL was checked when the config was loaded.
            purges: config.redirects.as_ref().and_then(|r| {
                let client = redis::Client::open(r.redis_url.as_str()).ok()?;
                Some((client, idarchive::keys::Keys::new(&r.key_prefix).purge()))
            }),
            caps,
            info_options,
            request_log: RequestLog::to_stdout(config.request_log, metrics.registry()),
            config,
            pool,
            metrics,
            draining: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The process is stopping (SIGTERM, or the old process of an upgrade): load balancers
    /// should send nothing new.
    pub fn start_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the process is stopping.
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Why this node should not get new requests, if it should not: stopping, no healthy
    /// iipsrv process, or a cache mount that cannot be read.
    pub fn not_ready(&self) -> Option<&'static str> {
        if self.is_draining() {
            return Some("draining: the gateway is stopping");
        }
        if self.pool.healthy_count() == 0 {
            return Some("no healthy iipsrv process");
        }
        // A stat of the mount's root: a stale NFS handle, an I/O error or lost permissions
        // show here (a hung mount makes the probe time out, which also reads as not ready).
        // A root that does not exist yet is fine: the first write creates it.
        let mount_broken = self.config.cache.as_ref().is_some_and(|cache| {
            std::fs::metadata(&cache.root).is_err_and(|e| e.kind() != std::io::ErrorKind::NotFound)
        });
        if mount_broken {
            return Some("the cache mount cannot be read");
        }
        None
    }

    /// Answers one request. Never fails: every problem becomes an IIIF-style error reply, and
    /// is logged here, once, at the level [`Error::response`] gives it.
    pub async fn handle(&self, request: &Incoming<'_>) -> Outcome {
        let (version, kind, result) = self.dispatch(request).await;
        let reply = result.unwrap_or_else(|error| {
            let response = error.response();
            request_log::notes::note(|notes| notes.error = Some(response.label));
            if let Some(level) = response.log_level {
                log::log!(
                    level,
                    "{} {} -> {} ({}){}: {error}",
                    request.method,
                    request.path,
                    response.status,
                    response.label,
                    request_log::notes::tag()
                );
            }
            // A withdrawn image is an answer of the ID archive, cached like its redirects.
            let cache_control = match error {
                Error::Gone => &self.config.cache_control.redirect,
                _ => &self.config.cache_control.error,
            };
            Reply::failure(&response, cache_control)
        });
        Outcome {
            reply: reply.finish(),
            version: version.map_or("none", version_label),
            kind,
        }
    }

    async fn dispatch(
        &self,
        request: &Incoming<'_>,
    ) -> (Option<Version>, &'static str, Result<Reply, Error>) {
        match request.method {
            "GET" | "HEAD" => {}
            "OPTIONS" => {
                return (
                    None,
                    "preflight",
                    Ok(Reply::preflight(request.preflight_headers)),
                )
            }
            _ => return (None, "other", Err(Error::MethodNotAllowed)),
        }
        let (version, rest) = match routes::classify(&self.config.prefix, request.path) {
            Endpoint::Unknown => return (None, "other", Err(Error::NoSuchEndpoint)),
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
        let checked = match self.retired(&route, rest, &base).await {
            Archive::Retired(kind, answer) => return (Some(version), kind, answer),
            Archive::NotRetired => true,
            Archive::Unchecked => false,
        };
        let (kind, result) = match route {
            Route::Base { identifier } => ("base", Ok(self.base_redirect(&base, &identifier))),
            Route::Info { identifier } => (
                "info",
                self.info(version, &identifier, &base, request).await,
            ),
            Route::Image {
                identifier,
                request: image_request,
            } => (
                "image",
                self.image(version, &identifier, &image_request, &base, request)
                    .await,
            ),
        };
        let result = if checked {
            result
        } else {
            // Served without knowing whether the identifier was withdrawn: not for a month.
            result.map(|reply| {
                reply.set_header("Cache-Control", self.config.cache_control.unchecked.clone())
            })
        };
        (Some(version), kind, result)
    }

    /// What the admin console's status page shows: the cache mount and the memory tier.
    pub fn cache_status(&self) -> serde_json::Value {
        let Some((cache, room)) = self.config.cache.as_ref().zip(self.room.as_ref()) else {
            return serde_json::Value::Null;
        };
        let (estimated, high_watermark, hard_limit) = room.status();
        serde_json::json!({
            "root": cache.root,
            "estimated_bytes": estimated,
            "high_watermark_bytes": high_watermark,
            "hard_limit_bytes": hard_limit,
            "memory_tier_bytes": self.derivatives.as_ref().map(|d| d.memory_bytes()),
            "masters_from_s3": self.config.masters.is_some(),
        })
    }

    /// Where the public IIIF endpoints are, for the admin console's viewer: the configured
    /// `public_base_url` (else `null`), the public listener's port and the path prefix.
    pub fn public_endpoint(&self) -> serde_json::Value {
        serde_json::json!({
            "public_base_url": self.config.public_base_url,
            "public_port": self.config.listen.port(),
            "prefix": self.config.prefix,
        })
    }

    /// Removes everything cached about one image: its derivatives, its master copy (when masters
    /// come from S3) and its facts. The next request fetches and renders afresh.
    ///
    /// # Errors
    /// A file that exists but cannot be removed.
    pub async fn purge(&self, identifier: &str) -> std::io::Result<PurgeOutcome> {
        let derivatives = match &self.derivatives {
            Some(cache) => cache.purge(identifier).await?,
            None => Removed::default(),
        };
        let master = match self.sources.masters() {
            Some(masters) => Some(masters.purge(identifier).await?),
            None => None,
        };
        Ok(PurgeOutcome {
            identifier: identifier.to_owned(),
            derivatives,
            master,
            facts: self.sources.forget(identifier),
        })
    }

    /// Tells the other nodes that `identifier` was purged here, so that they drop it from their
    /// memory tiers and facts too. `None` when there are no other nodes to tell (no Redis).
    pub async fn announce_purge(&self, identifier: &str) -> Option<Result<(), String>> {
        let (client, channel) = self.purges.as_ref()?;
        Some(crate::events::publish(client, channel, identifier).await)
    }

    /// The purge channel, when purges are announced.
    pub fn purge_channel(&self) -> Option<&str> {
        self.purges.as_ref().map(|(_, channel)| channel.as_str())
    }

    /// Forgets every image's derivatives in memory and every image's facts: purges announced
    /// while this node was not listening may have been missed.
    pub fn forget_all_in_memory(&self) {
        if let Some(cache) = &self.derivatives {
            cache.forget_memory();
        }
        self.sources.forget_all();
    }

    /// The lookup of the ID archive, for the background work that keeps it fresh.
    pub fn redirect_lookup(&self) -> Option<Arc<RedirectLookup>> {
        self.redirects.clone()
    }

    /// What the ID archive says about the identifier. For a retired one, the answer with its
    /// metrics kind: a redirect to the same path with the current identifier, or [`Error::Gone`].
    /// The request is served when the identifier is not retired or there is no archive
    /// ([`Archive::NotRetired`]), and also when the archive cannot be asked in time
    /// ([`Archive::Unchecked`]: fail open, with a short `Cache-Control`).
    ///
    /// `rest` is the path after the version, still percent-encoded; everything after the
    /// identifier is kept byte for byte.
    async fn retired(&self, route: &Route, rest: &str, base: &str) -> Archive {
        let Some(lookup) = self.redirects.as_ref() else {
            return Archive::NotRetired;
        };
        let identifier = route.identifier();
        // The parser takes the identifier from the start of `rest`, as the client wrote it.
        let Some(tail) = rest.strip_prefix(identifier.raw()) else {
            debug_assert!(false, "{rest:?} does not start with {:?}", identifier.raw());
            return Archive::NotRetired;
        };
        let redirect = match lookup.lookup(identifier.decoded()).await {
            redirect_lookup::Lookup::Redirect(redirect) => redirect,
            redirect_lookup::Lookup::NotRedirected => return Archive::NotRetired,
            redirect_lookup::Lookup::Unknown => {
                request_log::notes::note(|n| n.redirect = Some("unchecked"));
                return Archive::Unchecked;
            }
        };
        let kind = redirect.kind().as_str();
        request_log::notes::note(|n| n.redirect = Some(kind));
        self.metrics.redirects.with_label_values(&[kind]).inc();
        let Some(settings) = self.config.redirects.as_ref() else {
            return Archive::NotRetired;
        };
        let cache_control = &self.config.cache_control.redirect;
        let (status, target) = match &redirect {
            redirect_lookup::Redirect::Moved { target } => (settings.permanent_status, target),
            redirect_lookup::Redirect::Temporary { target } => (settings.temporary_status, target),
            redirect_lookup::Redirect::Gone => return Archive::Retired("gone", Err(Error::Gone)),
        };
        let location = format!("{base}/{}{tail}", redirect_lookup::encode_segment(target));
        Archive::Retired(
            "redirect",
            Ok(Reply::redirect(status, location, cache_control)),
        )
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

    async fn info(
        &self,
        version: Version,
        identifier: &Identifier,
        base: &str,
        request: &Incoming<'_>,
    ) -> Result<Reply, Error> {
        self.sources
            .with_source(identifier, |source| async move {
                self.info_reply(version, identifier, base, request, &source)
            })
            .await
    }

    fn info_reply(
        &self,
        version: Version,
        identifier: &Identifier,
        base: &str,
        request: &Incoming<'_>,
        source: &ImageSource,
    ) -> Result<Reply, Error> {
        let id = format!("{base}/{}", identifier.public_encoded());
        let document = match version {
            Version::V3 => iiif::info_v3(&source.record.info, &id, &self.info_options),
            Version::V2 => iiif::info_v2(&source.record.info, &id, &self.info_options),
        };
        let body = serde_json::to_vec_pretty(&document)
            .map_err(|e| Error::Internal(format!("info.json encoding failed: {e}")))?;
        let validators = Validators {
            etag: body_etag(&body),
            last_modified: source.last_modified,
        };
        let reply = if request.preconditions.not_modified(&validators) {
            Reply::new(304)
        } else {
            Reply::with_body(200, iiif::info_content_type(version, request.accept), body)
        };
        Ok(with_validators(reply, &validators)
            .header("Vary", "Accept")
            .header("Link", iiif::profile_link_header(version))
            .header("Cache-Control", self.config.cache_control.info.clone()))
    }

    async fn image(
        &self,
        version: Version,
        identifier: &Identifier,
        image_request: &ImageRequest,
        base: &str,
        request: &Incoming<'_>,
    ) -> Result<Reply, Error> {
        self.sources
            .with_source(identifier, |source| async move {
                let plan = iiif::plan(
                    version,
                    image_request,
                    &source.record.facts,
                    &self.info_options.limits,
                    &self.caps,
                )?;
                let key = DerivativeKey::new(
                    identifier.decoded(),
                    &source.version,
                    &plan,
                    self.config.jpeg_quality,
                );
                let validators = Validators {
                    etag: key.etag.clone(),
                    last_modified: source.last_modified,
                };
                let canonical = format!(
                    "<{base}/{}/{}>;rel=\"canonical\"",
                    identifier.public_encoded(),
                    iiif::canonical_path(version, &plan, &source.record.facts)
                );
                let reply = if request.preconditions.not_modified(&validators) {
                    Reply::new(304)
                } else if request.method == "HEAD" {
                    self.image_head(identifier, &plan, &key).await?
                } else {
                    let body = self.pixels(identifier, &source, &plan, &key).await?;
                    Reply::with_body(200, plan.format.mime(), body.bytes).holding(body.held)
                };
                Ok(with_validators(reply, &validators)
                    .header(
                        "Link",
                        format!("{}, {canonical}", iiif::profile_link_header(version)),
                    )
                    .header("Cache-Control", self.config.cache_control.image.clone()))
            })
            .await
    }

    /// The plan's output: from the derivative cache, or rendered (and cached when its size class
    /// is kept) within the render budget.
    async fn pixels(
        &self,
        identifier: &Identifier,
        source: &ImageSource,
        plan: &Plan,
        key: &DerivativeKey,
    ) -> Result<Body, Error> {
        let spec = if plan.post.is_passthrough() {
            None
        } else {
            Some(render_spec(plan, self.config.jpeg_quality)?)
        };
        let backend = plan.backend_output_size();
        let worst_case = |jpeg_bytes| render::cost::peak_bytes(backend, spec.as_ref(), jpeg_bytes);
        let estimate = worst_case(render::cost::jpeg_estimate(backend));
        // Refused before anything else: no cache entry or iipsrv answer can change it.
        self.budget.check(estimate)?;
        let render = || async {
            // Reserved before iipsrv is asked: its JPEG is the first thing held.
            let mut reservation = self.budget.reserve(estimate).await?;
            let jpeg = self
                .backend_pixels(identifier, &source.file, plan, &source.record)
                .await?;
            self.budget
                .grow_to(&mut reservation, worst_case(jpeg.len() as u64))
                .await?;
            let (bytes, mut reservation) = match spec.clone() {
                None => (jpeg, reservation),
                Some(spec) => self.render(jpeg, spec, plan, reservation).await?,
            };
            reservation.shrink_to(bytes.len() as u64);
            Ok(Body {
                bytes,
                held: Some(Arc::new(reservation)),
            })
        };
        match &self.derivatives {
            Some(cache) => {
                cache
                    .get_or_render(identifier.decoded(), key, cache.admits(plan), render)
                    .await
            }
            None => render().await,
        }
    }

    /// A `HEAD` answer without pixel work: the headers a `GET` would have, and its length only
    /// when the derivative is already cached (RFC 9110 §9.3.2 lets a `HEAD` answer omit it).
    async fn image_head(
        &self,
        identifier: &Identifier,
        plan: &Plan,
        key: &DerivativeKey,
    ) -> Result<Reply, Error> {
        let cached = match &self.derivatives {
            Some(cache) if cache.admits(plan) => cache.cached(identifier.decoded(), key).await,
            _ => None,
        };
        Ok(match cached {
            Some(bytes) => Reply::with_body(200, plan.format.mime(), bytes),
            None => Reply::new(200)
                .header("Content-Type", plan.format.mime())
                .length_unknown(),
        })
    }

    /// Asks iipsrv for the plan's pixels and checks it delivered the size it was asked for.
    ///
    /// The plan always asks for an exact `w,h`, which iipsrv gets right; a JPEG of another size
    /// is counted and logged as an iipsrv fault, and passed on as it is.
    async fn backend_pixels(
        &self,
        identifier: &Identifier,
        file: &ImageFile,
        plan: &Plan,
        record: &ImageRecord,
    ) -> Result<Bytes, Error> {
        // The estimated cost picks the admission lane the request waits in.
        let tile = crate::admission::tile_size(&record.info);
        let cost = crate::admission::Cost::of_image(plan, &record.facts, tile);
        let fetched = self.iipsrv.image(file, &plan.backend, cost).await?;
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

    /// Runs the gateway-side steps (rotation, transcoding) on a render worker.
    async fn render(
        &self,
        jpeg: Bytes,
        spec: render::RenderSpec,
        plan: &Plan,
        reservation: Reservation,
    ) -> Result<(Bytes, Reservation), Error> {
        let format = plan.format.extension();
        let started = Instant::now();
        let (rendered, reservation) = self
            .budget
            .run(reservation, move || render::render(&jpeg, &spec))
            .await?;
        let rendered = rendered.map_err(|e| Error::Render(e.to_string()))?;
        self.metrics
            .render_duration
            .with_label_values(&[format])
            .observe(started.elapsed().as_secs_f64());
        Ok((Bytes::from(rendered), reservation))
    }
}

/// What the ID archive said about a request's identifier.
enum Archive {
    /// Retired: this answer (a redirect or [`Error::Gone`]), with its metrics kind.
    Retired(&'static str, Result<Reply, Error>),
    /// Not retired, or there is no archive: serve it.
    NotRetired,
    /// The archive could not be asked in time and nothing is known: serve it, briefly cacheable.
    Unchecked,
}

fn version_label(version: Version) -> &'static str {
    match version {
        Version::V2 => "2",
        Version::V3 => "3",
    }
}

/// What [`Gateway::purge`] removed.
#[derive(Debug)]
pub struct PurgeOutcome {
    pub identifier: String,
    pub derivatives: Removed,
    /// `None` when masters are not fetched from S3 (iipsrv's own files are never removed).
    pub master: Option<Removed>,
    /// Entries of image facts dropped from memory.
    pub facts: usize,
}

impl PurgeOutcome {
    /// Whether anything at all was cached about the image.
    pub fn removed_anything(&self) -> bool {
        self.derivatives.bytes > 0 || self.master.is_some_and(|m| m.bytes > 0) || self.facts > 0
    }
}

fn with_validators(reply: Reply, validators: &Validators) -> Reply {
    let reply = reply.header("ETag", validators.etag.clone());
    match validators.last_modified {
        Some(time) => reply.header("Last-Modified", httpdate::fmt_http_date(time)),
        None => reply,
    }
}

/// The renderer's encoder for an IIIF format; `None` for the formats the gateway cannot produce.
/// The capabilities info.json lists are derived from this, so the two cannot disagree.
fn output_format(format: Format) -> Option<render::OutputFormat> {
    match format {
        Format::Jpg => Some(render::OutputFormat::Jpeg),
        Format::Png => Some(render::OutputFormat::Png),
        Format::Gif => Some(render::OutputFormat::Gif),
        Format::Webp => Some(render::OutputFormat::Webp),
        Format::Tif => Some(render::OutputFormat::Tiff),
        Format::Jp2 | Format::Pdf => None,
    }
}

/// Translates the planner's post-processing steps into the renderer's terms.
///
/// # Errors
/// A plan for a format the renderer cannot encode (the planner refuses those: a bug).
fn render_spec(plan: &Plan, jpeg_quality: u8) -> Result<render::RenderSpec, Error> {
    let rotation = plan.post.rotate;
    let format = output_format(plan.post.encode).ok_or_else(|| {
        Error::Internal(format!("no encoder for {}", plan.post.encode.extension()))
    })?;
    Ok(render::RenderSpec {
        mirror: rotation.is_some_and(|r| r.mirror),
        degrees: rotation.map_or(0.0, |r| r.degrees),
        tone: match plan.quality {
            Quality::Gray => render::Tone::Gray,
            Quality::Bitonal => render::Tone::Bitonal,
            Quality::Default | Quality::Color => render::Tone::AsIs,
        },
        format,
        jpeg_quality,
    })
}

#[cfg(test)]
mod tests;
