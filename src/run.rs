//! `ciao run CELL_FILE`: one cell through the [`Engine`], as the kernel runs
//! it, on a terminal. Text goes to stdout and stderr as it comes; live
//! displays (the job table) are printed once, as they last looked, at the
//! end. Ctrl-C interrupts the cell (the job is deleted or detached as
//! `%onInterrupt` says). The exit status is 0 only if the job succeeded
//! (with `--detach`: once it exists).

use std::io::Write as _;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;
use crate::engine::{ConfigSource, Engine};
use crate::output::{CellError, MimeBundle, Output, OutputEvent, Stream};

/// Exit status of an interrupted run (as a shell reports SIGINT).
const INTERRUPTED: u8 = 130;

/// Runs the cell file; returns the exit status.
pub fn run(args: &RunArgs) -> ExitCode {
    let code = match std::fs::read_to_string(&args.cell) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ciao: cannot read the cell file {}: {e}", args.cell.display());
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ciao: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let source = args.config.clone().map_or(ConfigSource::Default, ConfigSource::File);
    runtime.block_on(async {
        let engine = Engine::new(source);
        let cancel = CancellationToken::new();
        let on_interrupt = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_interrupt.cancel();
            }
        });
        let (out, rx) = Output::channel();
        let printer = tokio::spawn(print_events(rx));
        let (result, name) = if args.detach {
            match engine.submit_cell(&code, &out, &cancel).await {
                Ok(report) => (Ok(None), Some(report.name)),
                Err(e) => (Err(e), None),
            }
        } else {
            (engine.run_cell(&code, &out, &cancel).await, None)
        };
        drop(out);
        drop(engine);
        let displays = printer.await.unwrap_or_default();
        finish(result, displays, name)
    })
}

/// Prints text as it comes; returns the displays as they last looked. The
/// image push display goes to stderr, as it last looked, when the output ends.
async fn print_events(mut rx: tokio::sync::mpsc::UnboundedReceiver<OutputEvent>) -> Vec<MimeBundle> {
    let mut displays: Vec<(Option<String>, MimeBundle)> = Vec::new();
    let mut pushes: Vec<(String, MimeBundle)> = Vec::new();
    while let Some(event) = rx.recv().await {
        match event {
            OutputEvent::Text(Stream::Stdout, t) => {
                let mut o = std::io::stdout().lock();
                let _ = o.write_all(t.as_bytes());
                let _ = o.flush();
            }
            OutputEvent::Text(Stream::Stderr, t) => {
                let _ = std::io::stderr().lock().write_all(t.as_bytes());
            }
            OutputEvent::Display { data, display_id: Some(id) } if id.starts_with(crate::image::display::DISPLAY_ID_PREFIX) => {
                pushes.push((id, data));
            }
            OutputEvent::Display { data, display_id } => displays.push((display_id, data)),
            OutputEvent::Page(data) => displays.push((None, data)),
            OutputEvent::UpdateDisplay { data, display_id } => {
                if let Some(d) = pushes.iter_mut().find(|(id, _)| *id == display_id) {
                    d.1 = data;
                } else if let Some(d) = displays.iter_mut().find(|(id, _)| id.as_deref() == Some(display_id.as_str())) {
                    d.1 = data;
                }
            }
        }
    }
    let mut err = std::io::stderr().lock();
    for (_, d) in &pushes {
        if let Some(t) = plain(d) {
            let _ = writeln!(err, "[ciao] {}", t.trim_end());
        }
    }
    displays.into_iter().map(|(_, d)| d).collect()
}

fn plain(b: &MimeBundle) -> Option<&str> {
    b.get("text/plain").and_then(|v| v.as_str())
}

fn finish(result: Result<Option<MimeBundle>, CellError>, displays: Vec<MimeBundle>, name: Option<String>) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    for d in &displays {
        if let Some(t) = plain(d) {
            let _ = writeln!(stdout, "{}", t.trim_end());
        }
    }
    let status = match result {
        Ok(bundle) => {
            if let Some(t) = bundle.as_ref().and_then(plain) {
                let _ = writeln!(stdout, "{}", t.trim_end());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = stdout.flush();
            let mut err = std::io::stderr().lock();
            for line in e.display_traceback() {
                let _ = writeln!(err, "{line}");
            }
            if e.ename == "KeyboardInterrupt" { ExitCode::from(INTERRUPTED) } else { ExitCode::FAILURE }
        }
    };
    if let Some(n) = name {
        let _ = writeln!(stdout, "{n}");
    }
    let _ = stdout.flush();
    status
}
