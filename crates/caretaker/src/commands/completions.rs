//! `caretaker completions SHELL` and the hidden `caretaker manpage`: shell completion scripts
//! and man pages generated from the command-line definition itself, so they cannot drift from
//! it. `scripts/package` runs both on the binary it packages (docs/install.md).

use crate::cli::{Cli, CompletionsArgs, ManpageArgs};
use crate::exit::Code;
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::io::Write;

pub fn completions(args: &CompletionsArgs) -> Result<Code> {
    let mut cmd = Cli::command();
    // Rendered into memory first: clap_complete panics on a failed write (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "caretaker", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script).and_then(|()| out.flush()).context("writing the completion script")?;
    Ok(Code::Ok)
}

pub fn manpage(args: &ManpageArgs) -> Result<Code> {
    let cmd = Cli::command();
    match &args.dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page).context("rendering the man page")?;
            let mut out = std::io::stdout().lock();
            out.write_all(&page).and_then(|()| out.flush()).context("writing the man page")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let pages = write_pages(cmd, dir)?;
            println!("wrote {pages} man pages into {}", dir.display());
        }
    }
    Ok(Code::Ok)
}

/// One page for `cmd` and one for each visible subcommand, named like git's
/// (`caretaker-backup-run.1`); hidden subcommands get none. Returns how many were written.
fn write_pages(cmd: clap::Command, dir: &std::path::Path) -> Result<usize> {
    clap_mangen::generate_to(cmd, dir).with_context(|| format!("writing man pages into {}", dir.display()))?;
    let pages =
        std::fs::read_dir(dir)?.filter(|e| e.as_ref().is_ok_and(|e| e.path().extension() == Some("1".as_ref())));
    Ok(pages.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_every_visible_subcommand_and_no_hidden_one() {
        let dir = tempfile::tempdir().unwrap();
        write_pages(Cli::command(), dir.path()).unwrap();
        let names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        for page in ["caretaker.1", "caretaker-backup.1", "caretaker-backup-run.1", "caretaker-completions.1"] {
            assert!(names.iter().any(|n| n == page), "{page} missing from {names:?}");
        }
        assert!(
            !names.iter().any(|n| n.contains("demo-app") || n.contains("manpage") || n.contains("help")),
            "{names:?}"
        );
        let top = std::fs::read_to_string(dir.path().join("caretaker.1")).unwrap();
        assert!(top.contains(".TH caretaker 1"), "{top}");
        assert!(top.contains("caretaker\\-backup(1)"), "the top page names its subcommands' pages: {top}");
    }
}
