//! A running kernel's view: one builder (one set of caches) building N
//! different 4 KB cells onto the same base. Prints one JSON line with the
//! per-cell times and requests.
//!
//! ```text
//! warm_cells CONFIG.yaml N
//! ```
//! The config names the target (`registry:`) and, through the mirror map,
//! the base; the first cell (cold) is not counted.

use std::time::Instant;

use ciao::engine::{ConfigSource, Engine};
use ciao::image::progress::no_progress;
use ciao::interpreter::params::Cell;
use tokio_util::sync::CancellationToken;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn cell(i: usize) -> String {
    let mut code = format!("# warm cell {} {i}\n", std::process::id());
    while code.len() < 4096 {
        code.push_str("print('a line of a typical notebook cell')\n");
    }
    code
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: warm_cells CONFIG.yaml N");
        std::process::exit(2);
    }
    ciao::cli::init_logging();
    let engine = Engine::new(ConfigSource::File(args[1].clone().into()));
    let n: usize = args[2].parse()?;
    let cancel = CancellationToken::new();
    let mut times = Vec::new();
    let mut requests = Vec::new();
    for i in 0..=n {
        let (config, cell, plan) = engine.plan(&cell(i))?;
        let (Cell::Job(job), Some(plan)) = (cell, plan) else { return Err("not a job cell".into()) };
        let before = engine.image_builder().requests();
        let t = Instant::now();
        let built = engine.build_image(&config, &job, &plan, no_progress(), &cancel).await?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if i > 0 {
            times.push(ms);
            requests.push(engine.image_builder().requests() - before);
        } else {
            eprintln!("cold cell: {ms:.1} ms, {}", built.reference);
        }
    }
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{{\"median_ms\":{:.3},\"requests\":{:?},\"times_ms\":{:?}}}",
        sorted[sorted.len() / 2],
        requests,
        times
    );
    Ok(())
}
