//! `shop-load`: places orders on the Order Service and measures how long the consumer services
//! take to act on them.
//!
//! ```text
//! shop-load --rate 1000 --duration 30s            # open loop, then wait for the four services
//! shop-load --rate max --count 100000 --no-completion
//! shop-load drain --orders 100000                 # how fast each service works off a backlog
//! ```

mod cli;
mod completion;
mod load;
mod prom;
mod report;
mod snapshot;

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use cli::{Cli, Command, DrainArgs, Rate, RunArgs};
use completion::Scraper;
use load::{Amount, Plan};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Drain(args)) => drain(args).await,
        None => run(cli.run).await,
    }
}

/// Fails, after printing its report, if the run measured nothing or a service did not finish.
async fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.skus.is_empty() {
        bail!("--skus needs at least one SKU");
    }
    let plan = Plan {
        url: args.url.clone(),
        rate: args.rate,
        amount: match args.count {
            Some(n) => Amount::Count(n),
            None => Amount::Duration(args.duration.unwrap_or(Duration::from_secs(10))),
        },
        concurrency: args.concurrency,
        retries: args.retries,
        timeout: args.timeout,
        skus: args.skus.clone(),
    };
    let scraper = Scraper::new()?;
    let baseline = if args.no_completion {
        Vec::new()
    } else {
        scraper.baseline(&args.services).await?
    };

    let progress = progress_bar(plan.planned_orders(), "orders");
    let started = Instant::now();
    let results = load::run(&plan, &progress, ctrl_c()).await?;
    progress.finish_and_clear();

    let completion = if args.no_completion || results.interrupted {
        None
    } else {
        let progress = progress_bar(Some(0), "orders settled");
        let completions = until_ctrl_c(completion::await_completion(
            &scraper,
            &args.services,
            &baseline,
            results.accepted,
            started,
            Instant::now() + args.completion_timeout,
            &progress,
        ))
        .await;
        progress.finish_and_clear();
        Some(report::completion(&completions, results.accepted))
    };
    let report = report::RunReport {
        url: args.url,
        rate: match args.rate {
            Rate::PerSecond(r) => r.to_string(),
            Rate::Max => "max".to_owned(),
        },
        concurrency: args.concurrency,
        posts: report::posts(&results),
        completion,
    };
    print(&report, args.json, report::RunReport::table)?;
    if results.interrupted {
        eprintln!("interrupted");
        std::process::exit(INTERRUPTED);
    }
    if results.sent > 0 && results.accepted == 0 {
        bail!("no order was accepted");
    }
    if report.completion.as_ref().is_some_and(|c| !c.complete) {
        bail!("not every service settled every accepted order before the deadline");
    }
    Ok(())
}

async fn drain(args: DrainArgs) -> anyhow::Result<()> {
    let scraper = Scraper::new()?;
    let progress = progress_bar(Some(0), "orders settled");
    let completions = until_ctrl_c(completion::await_drain(
        &scraper,
        &args.services,
        args.orders,
        Instant::now() + args.timeout,
        &progress,
    ))
    .await?;
    progress.finish_and_clear();
    let report = report::drain(&completions, args.orders);
    print(&report, args.json, report::DrainReport::table)?;
    if !report.complete {
        bail!("not every service drained its backlog before the deadline");
    }
    Ok(())
}

fn print<T: serde::Serialize>(
    report: &T,
    json: bool,
    table: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", table(report));
    }
    Ok(())
}

/// A bar on stderr when a person is watching; nothing in a pipe or a log.
fn progress_bar(length: Option<u64>, unit: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match length {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    let template =
        format!("{{elapsed_precise}} [{{wide_bar}}] {{pos}}/{{len}} {unit} ({{per_sec}})");
    let spinner = format!("{{elapsed_precise}} {{spinner}} {{pos}} {unit} ({{per_sec}})");
    bar.set_style(
        ProgressStyle::with_template(if length.is_some() {
            &template
        } else {
            &spinner
        })
        .expect("a valid progress template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The exit status of a process stopped by Ctrl-C (128 + SIGINT), so a calling script stops
/// too: having handled the signal, this process does not die of it.
const INTERRUPTED: i32 = 130;

/// Runs `wait`, or exits at Ctrl-C: once the runtime handles SIGINT, it no longer stops the
/// process by itself.
async fn until_ctrl_c<T>(wait: impl Future<Output = T>) -> T {
    tokio::select! {
        result = wait => result,
        () = ctrl_c() => {
            eprintln!("interrupted while waiting for the services");
            std::process::exit(INTERRUPTED);
        }
    }
}

async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
