//! The progress bar of an import.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::store::{Phase, Progress};

/// The progress bar of an import: on a terminal only, and only for files big enough to wait
/// for.
pub(super) struct Bar {
    bar: Option<ProgressBar>,
    phase: Option<Phase>,
}

impl Bar {
    /// Rows from which an import is worth a bar.
    pub(super) const WORTH_SHOWING: usize = 20_000;

    /// A bar for an import of `n_rows` rows (hidden if that is few, or not on a terminal).
    pub(super) fn new(n_rows: usize) -> Bar {
        let shown = n_rows >= Bar::WORTH_SHOWING && std::io::stderr().is_terminal();
        Bar {
            bar: shown.then(|| ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())),
            phase: None,
        }
    }

    /// Shows where the import is.
    pub(super) fn update(&mut self, progress: Progress) {
        let Some(bar) = &self.bar else {
            return;
        };
        if self.phase != Some(progress.phase) {
            self.phase = Some(progress.phase);
            let label = match progress.phase {
                Phase::Loading => "loading the archive",
                Phase::Checking => "checking rows",
                Phase::Writing => "writing",
            };
            bar.reset();
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:20} [{bar:40}] {human_pos}/{human_len} ({per_sec}, {eta} left)",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            bar.set_message(label);
        }
        bar.set_length(progress.total);
        bar.set_position(progress.done);
    }

    /// Clears the bar.
    pub(super) fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
