//! The commands that ask the running daemon: status, metrics, flush, why.

use std::process::ExitCode;

use crate::control::{self, ClientError};
use crate::report;

pub(super) fn print_status(socket: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let st = control::get_status(socket)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&st)?);
    } else {
        print!("{}", report::status_text(&st));
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn print_metrics(socket: &std::path::Path) -> anyhow::Result<ExitCode> {
    match control::get_status(socket) {
        Ok(st) => print!("{}", report::metrics(Some(&st))),
        Err(ClientError::NotRunning(p)) => {
            eprintln!(
                "offloadd is not running (nothing answers on {}); reporting offloadd_up 0",
                p.display()
            );
            print!("{}", report::metrics(None));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn flush(socket: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let f = match control::flush(socket) {
        Ok(f) => f,
        Err(e) if json => {
            println!("{}", serde_json::json!({ "error": e.to_string() }));
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        println!("{}", serde_json::to_string(&f)?);
    } else if !f.flushed {
        println!("nothing to flush: table inet offloadd was not applied (see offloadd status), so no flow of ours was offloaded");
    } else {
        let flows = match f.offloaded_before {
            Some(n) => format!("{n} offloaded flows"),
            None => "offloaded flows".into(),
        };
        println!(
            "flushed the flowtable in {}: {flows} go through the whole ruleset on their next packet, then offload again",
            report::duration_ms(f.took_ms)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn why(
    socket: &std::path::Path,
    target: crate::view::history::Target,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (answers, missed) = super::why::ask(socket, target)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answers)?);
    } else if answers.is_empty() {
        eprintln!(
            "no flow to or from {} in conntrack now, and none in the daemon's recent path changes",
            target
        );
    } else {
        print!("{}", super::why::text(&answers, missed));
    }
    Ok(if answers.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
