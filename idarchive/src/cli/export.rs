//! `export [FILE|-]`: the whole archive in an import format.

use std::path::Path;
use std::time::Instant;

use super::{chosen_format, Failure, FormatArg};
use crate::formats::Exporter;
use crate::store::{RedirectStore, StoreError};

/// Writes every record to `file` (`-`: standard output), CSV or YAML.
pub(super) async fn run(
    store: &RedirectStore,
    file: &Path,
    format: Option<FormatArg>,
) -> Result<(), Failure> {
    let format = chosen_format(file, format);
    let name = file.display().to_string();
    let started = Instant::now();
    let n = if name == "-" {
        let stdout = std::io::stdout().lock();
        let mut exporter = Exporter::new(format, std::io::BufWriter::new(stdout))
            .map_err(|e| Failure::Setup(format!("cannot write: {e}")))?;
        let n = store.export(|id, r| exporter.write(id, r)).await?;
        exporter
            .finish()
            .map_err(|e| Failure::Setup(format!("cannot write: {e}")))?;
        n
    } else {
        // Write next to the destination, then rename: a failed export leaves no half file.
        let partial = file.with_extension(format!(
            "{}partial",
            file.extension()
                .map(|e| format!("{}.", e.to_string_lossy()))
                .unwrap_or_default()
        ));
        let output = std::fs::File::create(&partial)
            .map_err(|e| Failure::Setup(format!("cannot create {}: {e}", partial.display())))?;
        let result = async {
            let mut exporter = Exporter::new(format, std::io::BufWriter::new(output))?;
            let n = store.export(|id, r| exporter.write(id, r)).await?;
            exporter
                .finish()?
                .into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()?;
            std::fs::rename(&partial, file)?;
            Ok::<usize, StoreError>(n)
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        result.map_err(|e| Failure::Setup(format!("{name}: {e}")))?
    };
    eprintln!(
        "exported {n} records to {} in {:.1?}",
        if name == "-" {
            "standard output"
        } else {
            &name
        },
        started.elapsed()
    );
    Ok(())
}
