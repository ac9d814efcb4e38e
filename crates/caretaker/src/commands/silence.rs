//! `caretaker silence add|list|remove`: hold back notifications for matching alerts.

use crate::cli::{Global, SilenceCommand};
use crate::context::open_app;
use crate::exit::{Code, Failure};
use crate::output::table;
use anyhow::Result;
use caretaker_core::alert::validate_matcher;
use caretaker_core::duration::parse_duration;
use jiff::{SignedDuration, Timestamp};

pub fn run(global: &Global, cmd: &SilenceCommand) -> Result<Code> {
    let app = open_app(global)?;
    let now = Timestamp::now();
    match cmd {
        SilenceCommand::Add { matcher, duration, comment } => {
            validate_matcher(matcher).map_err(|e| {
                Failure::new(Code::Usage, e).hint("`caretaker alerts` shows the alerts and their names")
            })?;
            let d = parse_duration(duration)
                .map_err(|e| Failure::new(Code::Usage, format!("--for {duration}: {}", e.message)).hint(e.hint))?;
            let until = now.checked_add(SignedDuration::try_from(d)?)?;
            let s = app.store.add_silence(matcher, now, until, comment)?;
            println!("silence {} added: {} until {}", s.id, s.matcher, until.strftime("%Y-%m-%d %H:%M:%S UTC"));
            Ok(Code::Ok)
        }
        SilenceCommand::List { all, json } => {
            let list = app.store.silences(if *all { None } else { Some(now) })?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(Code::Ok);
            }
            if list.is_empty() {
                println!("no silences in force");
                return Ok(Code::Ok);
            }
            let mut rows = vec![vec!["ID".into(), "MATCHER".into(), "UNTIL".into(), "COMMENT".into()]];
            for s in list {
                rows.push(vec![
                    s.id.to_string(),
                    s.matcher,
                    s.until.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
                    s.comment,
                ]);
            }
            print!("{}", table(&rows));
            Ok(Code::Ok)
        }
        SilenceCommand::Remove { id } => {
            if app.store.remove_silence(*id)? {
                println!("silence {id} removed");
                Ok(Code::Ok)
            } else {
                Err(Failure::new(Code::Failure, format!("no silence with id {id}"))
                    .hint("`caretaker silence list --all` lists them")
                    .into())
            }
        }
    }
}
