//! The request logic of the public IIIF listener, in the order of the architecture's flow:
//! route → parse → redirect? → image facts → plan → iipsrv → post-process → headers.
//!
//! Nothing here knows Pingora: [`Gateway::handle`] takes an [`Incoming`] request and returns a
//! [`Reply`]. `service.rs` is the thin adapter between the two.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use iiif::{
    Capabilities, Format, Identifier, ImageRequest, InfoOptions, Plan, Quality, Route, Version,
};
use lazyfetch::layout::CacheLayout;
use lazyfetch::AccessStamps;

use crate::backend::{Iipsrv, ImageFile};
use crate::conditional::{Preconditions, Validators};
use crate::config::GatewayConfig;
use crate::derivatives::files::Removed;
use crate::derivatives::{body_etag, DerivativeCache, DerivativeKey};
use crate::facts::{FactsCache, ImageRecord, Lookup};
use crate::fcgi::BackendPool;
use crate::masters::Masters;
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
    iipsrv: Iipsrv,
    facts: FactsCache,
    caps: Capabilities,
    info_options: InfoOptions,
    /// The ID archive; `None` when `gateway.redirects` is absent (no lookup at all).
    redirects: Option<Arc<RedirectLookup>>,
    /// The access-master cache; `None` when iipsrv reads masters from its own filesystem.
    masters: Option<Arc<Masters>>,
    /// The derivative cache; `None` when `gateway.cache` is absent.
    derivatives: Option<Arc<DerivativeCache>>,
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
        let masters = config
            .masters
            .clone()
            .zip(config.cache.clone())
            .map(|(masters, cache)| {
                Arc::new(Masters::new(cache, masters, metrics.registry().clone()))
            });
        let derivatives =
            config
                .cache
                .as_ref()
                .zip(config.derivatives.clone())
                .map(|(cache, policy)| {
                    DerivativeCache::new(
                        CacheLayout::new(cache.root.clone()),
                        policy,
                        AccessStamps::new(Duration::from_secs(cache.touch_interval_s)),
                        metrics.registry(),
                    )
                });
        Gateway {
            masters,
            derivatives,
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
        (Some(version), kind, result)
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
        let master = match &self.masters {
            Some(masters) => Some(masters.purge(identifier).await?),
            None => None,
        };
        Ok(PurgeOutcome {
            identifier: identifier.to_owned(),
            derivatives,
            master,
            facts: self.facts.invalidate_image(identifier),
        })
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

    /// Where iipsrv reads `identifier` from, which copy of the master that is, and the image's
    /// facts for that copy.
    async fn source(&self, identifier: &Identifier) -> Result<ImageSource, Failure> {
        let name = identifier.decoded();
        let Some(masters) = &self.masters else {
            let file = ImageFile::from_identifier(identifier);
            let record = self.record(name, &file).await?;
            // Without a master cache, iipsrv's Last-Modified (the file's mtime) is the version.
            let version = record.last_modified.clone().unwrap_or_default();
            let last_modified = record
                .last_modified
                .as_deref()
                .and_then(|text| httpdate::parse_http_date(text).ok());
            return Ok(ImageSource {
                file,
                master_fif: None,
                version,
                last_modified,
                record,
            });
        };
        // A replaced master's derivatives need no eviction here: lazyfetch removes their
        // directory, and their keys name the old version, so none of them can be served again.
        let master = masters.ensure(name).await?;
        let file = ImageFile::cached_master(&master.fif);
        // Facts belong to one copy of the master: a replaced master gets its own entry.
        let record = self
            .record(&format!("{name}\0{}", master.version), &file)
            .await?;
        Ok(ImageSource {
            file,
            master_fif: Some(master.fif),
            version: master.version,
            last_modified: Some(master.last_modified),
            record,
        })
    }

    /// Runs `work` on the image's source; if iipsrv cannot find a cached master (prune or purge
    /// removed it mid-flight), fetches the master again and retries once.
    async fn with_source<T, F, Fut>(&self, identifier: &Identifier, work: F) -> Result<T, Failure>
    where
        F: Fn(ImageSource) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let source = self.source(identifier).await?;
        let Some(masters) = &self.masters else {
            return work(source).await;
        };
        let name = identifier.decoded();
        let fif = source.master_fif.clone();
        match work(source).await {
            Err(failure)
                if failure.status == 404
                    && fif.as_deref().is_some_and(|f| masters.is_missing(f)) =>
            {
                log::info!("master of {name:?} vanished while in use; fetching it again");
                masters.refetch(name).await?;
                work(self.source(identifier).await?).await
            }
            result => result,
        }
    }

    async fn record(&self, key: &str, file: &ImageFile) -> Result<Arc<ImageRecord>, Failure> {
        let (record, lookup) = self
            .facts
            .get(key, || async {
                let fetched = self.iipsrv.info(file).await?;
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
        request: &Incoming<'_>,
    ) -> Result<Reply, Failure> {
        let source = self.source(identifier).await?;
        let id = format!("{base}/{}", identifier.public_encoded());
        let document = match version {
            Version::V3 => iiif::info_v3(&source.record.info, &id, &self.info_options),
            Version::V2 => iiif::info_v2(&source.record.info, &id, &self.info_options),
        };
        let body = serde_json::to_vec_pretty(&document)
            .map_err(|e| Failure::new(500, format!("info.json encoding failed: {e}")))?;
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
    ) -> Result<Reply, Failure> {
        self.with_source(identifier, |source| async move {
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
            } else {
                let body = self.pixels(identifier, &source, &plan, &key).await?;
                Reply::with_body(200, plan.format.mime(), body)
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
    /// is kept).
    async fn pixels(
        &self,
        identifier: &Identifier,
        source: &ImageSource,
        plan: &Plan,
        key: &DerivativeKey,
    ) -> Result<Bytes, Failure> {
        let render = || async {
            let jpeg = self
                .backend_pixels(identifier, &source.file, plan, &source.record)
                .await?;
            if plan.post.is_passthrough() {
                Ok(jpeg)
            } else {
                self.render(jpeg, plan).await
            }
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
    ) -> Result<Bytes, Failure> {
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

/// An image's file for iipsrv, the version of its master and the facts of that version.
struct ImageSource {
    file: ImageFile,
    /// The master's copy relative to the cache root (`None`: iipsrv reads its own files).
    master_fif: Option<String>,
    /// Changes whenever the master is replaced; part of every derivative's key and entity tag.
    version: String,
    last_modified: Option<SystemTime>,
    record: Arc<ImageRecord>,
}

fn with_validators(reply: Reply, validators: &Validators) -> Reply {
    let reply = reply.header("ETag", validators.etag.clone());
    match validators.last_modified {
        Some(time) => reply.header("Last-Modified", httpdate::fmt_http_date(time)),
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
