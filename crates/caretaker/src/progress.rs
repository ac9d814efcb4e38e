//! Progress bars for the backup engine on a terminal (indicatif), through rustic_core's
//! `ProgressBars` hook, and a byte counter for the database dump streamed into the database
//! ([`writer`]). Only when both stdout and stderr are terminals and no `--json` was asked for:
//! scheduled runs, pipes, logs and JSON output stay quiet. Bars draw on stderr.

use caretaker_backup::{Progress, ProgressBars, ProgressType, ResticRepository, RusticProgress};
use indicatif::{HumanBytes, HumanDuration, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Whether this process shows progress bars (`json`: the command prints JSON).
pub fn wanted(json: bool) -> bool {
    !json && std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

/// The repository with terminal progress bars when [`wanted`], unchanged otherwise.
pub fn attach(repo: ResticRepository, json: bool) -> ResticRepository {
    if wanted(json) {
        SHOWN.store(true, Ordering::Relaxed);
        repo.with_progress(Arc::new(TerminalBars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
        }))
    } else {
        repo
    }
}

/// Set once a command attached bars: [`writer`] then shows one too.
static SHOWN: AtomicBool = AtomicBool::new(false);

/// `inner`, counting what goes through on a bar labelled `prefix` when this command shows bars.
pub fn writer<W: Write>(inner: W, prefix: &str) -> BarWriter<W> {
    let bar = SHOWN.load(Ordering::Relaxed).then(|| {
        let style =
            ProgressStyle::with_template("{prefix:32} [{elapsed_precise}] {bytes:>10} {bytes_per_sec:>12} {spinner}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
            .with_style(style)
            .with_prefix(prefix.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    BarWriter { inner, bar }
}

/// See [`writer`]; the bar leaves one summary line when dropped.
pub struct BarWriter<W: Write> {
    inner: W,
    bar: Option<ProgressBar>,
}

impl<W: Write> Write for BarWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(b) = &self.bar {
            b.inc(n as u64);
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Drop for BarWriter<W> {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
            eprintln!("{}: {} in {}", b.prefix(), HumanBytes(b.position()), HumanDuration(b.elapsed()));
        }
    }
}

#[derive(Debug)]
struct TerminalBars {
    multi: MultiProgress,
}

impl ProgressBars for TerminalBars {
    fn progress(&self, kind: ProgressType, prefix: &str) -> Progress {
        let template = match kind {
            ProgressType::Spinner => "{prefix:32} {spinner} {elapsed}",
            ProgressType::Counter => "{prefix:32} [{elapsed_precise}] {wide_bar} {pos:>8}/{len:8} {eta}",
            ProgressType::Bytes => {
                "{prefix:32} [{elapsed_precise}] {wide_bar} {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} {eta}"
            }
        };
        let style = ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = match kind {
            ProgressType::Spinner => ProgressBar::new_spinner(),
            _ => ProgressBar::new(0),
        };
        let bar = self.multi.add(bar.with_style(style).with_prefix(prefix.trim_end_matches('.').to_string()));
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress::new(TerminalBar { bar, bytes: matches!(kind, ProgressType::Bytes), multi: self.multi.clone() })
    }
}

#[derive(Debug)]
struct TerminalBar {
    bar: ProgressBar,
    bytes: bool,
    multi: MultiProgress,
}

impl RusticProgress for TerminalBar {
    fn is_hidden(&self) -> bool {
        false
    }
    fn set_length(&self, len: u64) {
        self.bar.set_length(len);
    }
    fn set_title(&self, title: &str) {
        self.bar.set_prefix(title.trim_end_matches('.').to_string());
    }
    fn inc(&self, inc: u64) {
        self.bar.inc(inc);
    }
    /// Every bar vanishes when done (the engine has many short steps: listing snapshots,
    /// reading the index); a step that moved data leaves one line saying how much and how long.
    fn finish(&self) {
        self.bar.finish_and_clear();
        let moved = self.bar.position();
        if self.bytes && moved > 0 {
            let _ = self.multi.println(format!(
                "{}: {} in {}",
                self.bar.prefix(),
                HumanBytes(moved),
                HumanDuration(self.bar.elapsed())
            ));
        }
    }
}
