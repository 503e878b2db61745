//! Watching the consumer services work: when has each processed what it was sent?

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::ProgressBar;

use crate::snapshot::{Histogram, Snapshot};

/// How often the services are scraped while waiting; the resolution of every completion time.
const POLL: Duration = Duration::from_millis(50);

pub struct Scraper {
    client: reqwest::Client,
}

impl Scraper {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Scraper {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .context("cannot build the HTTP client")?,
        })
    }

    pub async fn scrape(&self, base: &str) -> anyhow::Result<Snapshot> {
        let url = format!("{}/metrics", base.trim_end_matches('/'));
        let text = self
            .client
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("cannot scrape {url}"))?
            .text()
            .await
            .with_context(|| format!("cannot read {url}"))?;
        Snapshot::from_text(&text)
            .map_err(anyhow::Error::msg)
            .with_context(|| url.clone())
    }

    /// One scrape of each service; any that cannot be read fails the run before it starts.
    pub async fn baseline(&self, services: &[String]) -> anyhow::Result<Vec<Snapshot>> {
        let mut snapshots = Vec::with_capacity(services.len());
        for service in services {
            snapshots.push(self.scrape(service).await?);
        }
        Ok(snapshots)
    }
}

/// One service's share of the work, once it was done or the deadline passed.
#[derive(Debug, Clone)]
pub struct Completion {
    pub url: String,
    pub service: String,
    /// Processed events counted since the baseline (or since the first progress, in a drain).
    pub processed: u64,
    pub dead_lettered: u64,
    /// It processed them all before the deadline.
    pub complete: bool,
    /// From the start of the run (or of the drain) until the service had processed them all.
    pub elapsed: Option<Duration>,
    /// Events per second over `elapsed`.
    pub rate: Option<f64>,
    /// The order→effect observations made in between.
    pub order_to_effect: Option<Histogram>,
    /// Why its figures could not be read, if they could not.
    pub error: Option<String>,
}

/// Waits until every service has processed `expected` events more than its baseline, or
/// `deadline`. Times are measured from `started`, the start of the run.
pub async fn await_completion(
    scraper: &Scraper,
    services: &[String],
    baseline: &[Snapshot],
    expected: u64,
    started: Instant,
    deadline: Instant,
    progress: &ProgressBar,
) -> Vec<Completion> {
    let mut pending: Vec<usize> = (0..services.len()).collect();
    let mut latest: Vec<Option<Snapshot>> = vec![None; services.len()];
    let mut done_at: Vec<Option<Instant>> = vec![None; services.len()];
    let mut errors: Vec<Option<String>> = vec![None; services.len()];
    progress.set_length(expected * services.len() as u64);
    loop {
        for &i in &pending {
            let now = Instant::now();
            match scraper.scrape(&services[i]).await {
                Ok(snapshot) => {
                    if snapshot.processed.saturating_sub(baseline[i].processed) >= expected {
                        done_at[i] = Some(now);
                    }
                    latest[i] = Some(snapshot);
                    errors[i] = None;
                }
                Err(err) => errors[i] = Some(format!("{err:#}")),
            }
        }
        pending.retain(|&i| done_at[i].is_none());
        progress.set_position(
            latest
                .iter()
                .zip(baseline)
                .map(|(l, b)| {
                    l.as_ref()
                        .map_or(0, |l| l.processed.saturating_sub(b.processed).min(expected))
                })
                .sum(),
        );
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    (0..services.len())
        .map(|i| {
            let before = &baseline[i];
            let after = latest[i].as_ref();
            let elapsed = done_at[i].map(|t| t.duration_since(started));
            let mut error = errors[i].clone();
            let order_to_effect = match (
                after.and_then(|a| a.order_to_effect.as_ref()),
                &before.order_to_effect,
            ) {
                (Some(now), Some(then)) => now.since(then).map_err(|e| error = Some(e)).ok(),
                (Some(now), None) => Some(now.clone()),
                _ => None,
            };
            Completion {
                url: services[i].clone(),
                service: before.service.clone(),
                processed: after.map_or(0, |a| a.processed.saturating_sub(before.processed)),
                dead_lettered: after
                    .map_or(0, |a| a.dead_lettered.saturating_sub(before.dead_lettered)),
                complete: elapsed.is_some(),
                elapsed,
                rate: elapsed.map(|e| expected as f64 / e.as_secs_f64()),
                order_to_effect,
                error,
            }
        })
        .collect()
}

/// Measures how fast each service works off a backlog of `events`: from the first scrape
/// that shows it processing (so its start-up and group join are not counted) to the first
/// that shows it done. Services may still be starting when this begins.
pub async fn await_drain(
    scraper: &Scraper,
    services: &[String],
    events: u64,
    deadline: Instant,
    progress: &ProgressBar,
) -> anyhow::Result<Vec<Completion>> {
    if events == 0 {
        bail!("a drain of 0 events measures nothing");
    }
    struct Watch {
        service: Option<String>,
        first: Option<(Instant, u64)>,
        latest: u64,
        dead_lettered: u64,
        done: Option<(Instant, u64)>,
        error: Option<String>,
    }
    let mut watches: Vec<Watch> = services
        .iter()
        .map(|_| Watch {
            service: None,
            first: None,
            latest: 0,
            dead_lettered: 0,
            done: None,
            error: None,
        })
        .collect();
    progress.set_length(events * services.len() as u64);
    loop {
        for (watch, url) in watches.iter_mut().zip(services) {
            if watch.done.is_some() {
                continue;
            }
            let now = Instant::now();
            match scraper.scrape(url).await {
                Ok(snapshot) => {
                    watch.service = Some(snapshot.service);
                    watch.latest = snapshot.processed;
                    watch.dead_lettered = snapshot.dead_lettered;
                    watch.error = None;
                    if watch.first.is_none() && snapshot.processed > 0 {
                        watch.first = Some((now, snapshot.processed));
                    }
                    if snapshot.processed >= events {
                        watch.done = Some((now, snapshot.processed));
                    }
                }
                // Not up yet: keep trying until the deadline.
                Err(err) => watch.error = Some(format!("{err:#}")),
            }
        }
        progress.set_position(watches.iter().map(|w| w.latest.min(events)).sum());
        if watches.iter().all(|w| w.done.is_some()) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(watches
        .into_iter()
        .zip(services)
        .map(|(w, url)| {
            let measured = match (w.first, w.done) {
                (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                    Some((t1 - t0, (n1 - n0) as f64 / (t1 - t0).as_secs_f64()))
                }
                _ => None,
            };
            let error = match (&w.error, w.done, measured) {
                (Some(e), _, _) => Some(e.clone()),
                (None, Some(_), None) => {
                    Some("done at the first scrape that showed progress: too fast to time".into())
                }
                _ => None,
            };
            Completion {
                url: url.clone(),
                service: w.service.unwrap_or_else(|| url.clone()),
                processed: w.latest,
                dead_lettered: w.dead_lettered,
                complete: w.done.is_some(),
                elapsed: measured.map(|m| m.0),
                rate: measured.map(|m| m.1),
                order_to_effect: None,
                error,
            }
        })
        .collect())
}
