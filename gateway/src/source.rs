//! Where iipsrv reads an image from, and what the gateway knows about it.
//!
//! An image's *source* is the file iipsrv opens (a master copied from S3 into the cache mount,
//! or iipsrv's own file when there is no master cache), the version of that master, and the
//! image's facts for that version. [`ImageSources::with_source`] is the only way the request
//! logic gets one, so that every request (info.json and pixels alike) survives a master that
//! prune or purge removes while the request runs: iipsrv then cannot find the file, and the
//! request fetches the master again and retries once.

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use iiif::Identifier;
use lazyfetch::Master;

use crate::backend::{Iipsrv, ImageFile};
use crate::error::Error;
use crate::facts::{FactsCache, ImageRecord, Lookup};
use crate::masters::Masters;
use crate::metrics::Metrics;

/// An image's file for iipsrv, the version of its master and the facts of that version.
pub struct ImageSource {
    /// What iipsrv is asked to open.
    pub file: ImageFile,
    /// Changes whenever the master is replaced; part of every derivative's key and entity tag.
    pub version: String,
    /// The master's modification time, for `Last-Modified`.
    pub last_modified: Option<SystemTime>,
    /// Size, tiles and pyramid of this version.
    pub record: Arc<ImageRecord>,
}

/// Resolves identifiers to sources: masters through `lazyfetch`, facts through iipsrv once.
pub struct ImageSources {
    iipsrv: Arc<Iipsrv>,
    /// `None` when iipsrv reads masters from its own filesystem.
    masters: Option<Arc<Masters>>,
    facts: FactsCache,
    metrics: Arc<Metrics>,
}

impl ImageSources {
    /// Sources read through `iipsrv`, with masters from `masters` when there is a master cache.
    pub fn new(
        iipsrv: Arc<Iipsrv>,
        masters: Option<Arc<Masters>>,
        facts: FactsCache,
        metrics: Arc<Metrics>,
    ) -> Self {
        ImageSources {
            iipsrv,
            masters,
            facts,
            metrics,
        }
    }

    /// The access-master cache, when masters come from S3.
    pub fn masters(&self) -> Option<&Arc<Masters>> {
        self.masters.as_ref()
    }

    /// Drops the facts of every copy of `identifier`'s master; returns how many entries went.
    pub fn forget(&self, identifier: &str) -> usize {
        self.facts.invalidate_image(identifier)
    }

    /// Forgets the facts of every image.
    pub fn forget_all(&self) {
        self.facts.clear();
    }

    /// Runs `work` on the image's source. If iipsrv cannot find a cached master (prune or purge
    /// removed it mid-flight, while the facts were read or while `work` ran), fetches the master
    /// again and retries once.
    ///
    /// # Errors
    /// The master or its facts could not be had, or `work` failed.
    pub async fn with_source<T, F, Fut>(&self, identifier: &Identifier, work: F) -> Result<T, Error>
    where
        F: Fn(ImageSource) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let Some(masters) = &self.masters else {
            return work(self.own_file(identifier).await?).await;
        };
        let name = identifier.decoded();
        let master = masters.ensure(name).await?;
        let fif = master.fif.clone();
        match self.on_master(identifier, master, &work).await {
            Err(error) if error.is_missing_file() && masters.is_missing(&fif) => {
                log::info!("master of {name:?} vanished while in use; fetching it again");
                let master = masters.refetch(name).await?;
                self.on_master(identifier, master, &work).await
            }
            result => result,
        }
    }

    /// `work` on one copy of the master in the cache mount.
    async fn on_master<T, F, Fut>(
        &self,
        identifier: &Identifier,
        master: Master,
        work: &F,
    ) -> Result<T, Error>
    where
        F: Fn(ImageSource) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let file = ImageFile::cached_master(&master.fif);
        // Facts belong to one copy of the master: a replaced master gets its own entry.
        let key = format!("{}\0{}", identifier.decoded(), master.version);
        let record = self.record(&key, &file).await?;
        // A replaced master's derivatives need no eviction here: lazyfetch removes their
        // directory, and their keys name the old version, so none of them can be served again.
        work(ImageSource {
            file,
            version: master.version,
            last_modified: Some(master.last_modified),
            record,
        })
        .await
    }

    /// The source when iipsrv reads the identifier from its own filesystem (no master cache).
    async fn own_file(&self, identifier: &Identifier) -> Result<ImageSource, Error> {
        let file = ImageFile::from_identifier(identifier);
        let record = self.record(identifier.decoded(), &file).await?;
        // Without a master cache, iipsrv's Last-Modified (the file's mtime) is the version.
        let version = record.last_modified.clone().unwrap_or_default();
        let last_modified = record
            .last_modified
            .as_deref()
            .and_then(|text| httpdate::parse_http_date(text).ok());
        Ok(ImageSource {
            file,
            version,
            last_modified,
            record,
        })
    }

    /// The facts under `key`, from memory or from iipsrv (once however many ask together).
    async fn record(&self, key: &str, file: &ImageFile) -> Result<Arc<ImageRecord>, Error> {
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
}
