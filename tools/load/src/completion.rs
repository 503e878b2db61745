//! Watching the consumer services work: when has each settled the orders it was sent?
//!
//! A service has settled an order when it has committed its part of the order's end
//! (`order_confirmed` or `order_cancelled`), which its order→effect histogram counts once per
//! order. Events processed are counted too, as throughput, but they are no measure of
//! completion: each service handles a different number of events per order.

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
        let text = self.fetch(base).await?;
        parse(base, &text)
    }

    /// The text of a service's `/metrics`; an error means it could not be read (yet).
    async fn fetch(&self, base: &str) -> anyhow::Result<String> {
        let url = metrics_url(base);
        self.client
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("cannot scrape {url}"))?
            .text()
            .await
            .with_context(|| format!("cannot read {url}"))
    }

    /// One scrape of each service; any that cannot be read, or cannot say how many orders it
    /// has settled, fails the run before it starts.
    pub async fn baseline(&self, services: &[String]) -> anyhow::Result<Vec<Snapshot>> {
        let mut snapshots = Vec::with_capacity(services.len());
        for service in services {
            snapshots.push(self.scrape(service).await?);
        }
        Ok(snapshots)
    }
}

fn metrics_url(base: &str) -> String {
    format!("{}/metrics", base.trim_end_matches('/'))
}

/// A scrape that was read but says nothing usable: the wrong service or a changed contract,
/// which waiting will not mend.
fn parse(base: &str, text: &str) -> anyhow::Result<Snapshot> {
    Snapshot::from_text(text)
        .map_err(anyhow::Error::msg)
        .with_context(|| metrics_url(base))
}

/// One service's share of the work, once it was done or the deadline passed.
#[derive(Debug, Clone)]
pub struct Completion {
    pub url: String,
    pub service: String,
    /// Orders whose end the service committed since the baseline (in a drain, since it
    /// started).
    pub settled: u64,
    /// Events of every type it processed meanwhile: about two per order, varying by service.
    pub processed: u64,
    pub dead_lettered: u64,
    /// It settled every order before the deadline.
    pub complete: bool,
    /// From the start of the run (or from the service's first processed event, in a drain)
    /// until it had settled every order.
    pub elapsed: Option<Duration>,
    /// Orders settled per second over `elapsed`.
    pub orders_per_second: Option<f64>,
    /// Events processed per second over `elapsed`.
    pub events_per_second: Option<f64>,
    /// The order→effect observations made in between: one per order settled.
    pub order_to_effect: Option<Histogram>,
    /// Why its figures could not be read, if they could not.
    pub error: Option<String>,
}

/// Orders `now` has settled since `baseline`, two scrapes of one service.
fn settled_since(now: &Snapshot, baseline: &Snapshot) -> u64 {
    now.settled().saturating_sub(baseline.settled())
}

/// Waits until every service has settled `expected` orders more than its baseline, or
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
                    if settled_since(&snapshot, &baseline[i]) >= expected {
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
                .map(|(l, b)| l.as_ref().map_or(0, |l| settled_since(l, b).min(expected)))
                .sum(),
        );
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    (0..services.len())
        .map(|i| {
            let elapsed = done_at[i].map(|t| t.duration_since(started));
            completion(
                &services[i],
                &baseline[i],
                latest[i].as_ref(),
                elapsed,
                expected,
                errors[i].clone(),
            )
        })
        .collect()
}

/// What one service did between its baseline and its latest scrape (`None`: no scrape since
/// was read), having settled `expected` orders after `elapsed` if it did.
fn completion(
    url: &str,
    before: &Snapshot,
    after: Option<&Snapshot>,
    elapsed: Option<Duration>,
    expected: u64,
    mut error: Option<String>,
) -> Completion {
    let order_to_effect = after.and_then(|a| {
        a.order_to_effect
            .since(&before.order_to_effect)
            .map_err(|e| error = Some(e))
            .ok()
    });
    let processed = after.map_or(0, |a| a.processed.saturating_sub(before.processed));
    let per_second = |n: u64| elapsed.map(|e| n as f64 / e.as_secs_f64());
    Completion {
        url: url.to_owned(),
        service: before.service.clone(),
        settled: after.map_or(0, |a| settled_since(a, before)),
        processed,
        dead_lettered: after.map_or(0, |a| a.dead_lettered.saturating_sub(before.dead_lettered)),
        complete: elapsed.is_some(),
        elapsed,
        orders_per_second: per_second(expected),
        events_per_second: per_second(processed),
        order_to_effect,
        error,
    }
}

/// One service watched through a drain.
#[derive(Debug, Default)]
struct Watch {
    service: Option<String>,
    /// The first scrape that showed it processing: when, events processed, orders settled.
    first: Option<(Instant, u64, u64)>,
    latest: Option<Snapshot>,
    /// The scrape that showed every order settled.
    done: Option<(Instant, u64, u64)>,
    error: Option<String>,
}

impl Watch {
    fn observe(&mut self, now: Instant, snapshot: Snapshot, orders: u64) {
        let point = (now, snapshot.processed, snapshot.settled());
        if self.first.is_none() && snapshot.processed > 0 {
            self.first = Some(point);
        }
        if snapshot.settled() >= orders {
            self.done = Some(point);
        }
        self.service = Some(snapshot.service.clone());
        self.latest = Some(snapshot);
        self.error = None;
    }

    fn into_completion(self, url: &str) -> Completion {
        let measured = match (self.first, self.done) {
            (Some((t0, n0, s0)), Some((t1, n1, s1))) if t1 > t0 => {
                let secs = (t1 - t0).as_secs_f64();
                Some((t1 - t0, (s1 - s0) as f64 / secs, (n1 - n0) as f64 / secs))
            }
            _ => None,
        };
        let error = match (&self.error, self.done, measured) {
            (Some(e), _, _) => Some(e.clone()),
            (None, Some(_), None) => {
                Some("done at the first scrape that showed progress: too fast to time".into())
            }
            _ => None,
        };
        let latest = self.latest.as_ref();
        Completion {
            url: url.to_owned(),
            service: self.service.unwrap_or_else(|| url.to_owned()),
            settled: latest.map_or(0, Snapshot::settled),
            processed: latest.map_or(0, |l| l.processed),
            dead_lettered: latest.map_or(0, |l| l.dead_lettered),
            complete: self.done.is_some(),
            elapsed: measured.map(|m| m.0),
            orders_per_second: measured.map(|m| m.1),
            events_per_second: measured.map(|m| m.2),
            order_to_effect: None,
            error,
        }
    }
}

/// Measures how fast each service works off a backlog of `orders`: from the first scrape
/// that shows it processing (so its start-up and group join are not counted) to the first
/// that shows every order settled. Services may still be starting when this begins; one that
/// answers with metrics that cannot say what it settled fails the drain at once.
pub async fn await_drain(
    scraper: &Scraper,
    services: &[String],
    orders: u64,
    deadline: Instant,
    progress: &ProgressBar,
) -> anyhow::Result<Vec<Completion>> {
    if orders == 0 {
        bail!("a drain of 0 orders measures nothing");
    }
    let mut watches: Vec<Watch> = services.iter().map(|_| Watch::default()).collect();
    progress.set_length(orders * services.len() as u64);
    loop {
        for (watch, url) in watches.iter_mut().zip(services) {
            if watch.done.is_some() {
                continue;
            }
            let now = Instant::now();
            match scraper.fetch(url).await {
                Ok(text) => watch.observe(now, parse(url, &text)?, orders),
                // Not up yet: keep trying until the deadline.
                Err(err) => watch.error = Some(format!("{err:#}")),
            }
        }
        progress.set_position(
            watches
                .iter()
                .map(|w| w.latest.as_ref().map_or(0, |l| l.settled().min(orders)))
                .sum(),
        );
        if watches.iter().all(|w| w.done.is_some()) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(watches
        .into_iter()
        .zip(services)
        .map(|(w, url)| w.into_completion(url))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scrape of the inventory service: `processed` events, `settled` orders.
    fn snapshot(processed: u64, settled: u64) -> Snapshot {
        let text = format!(
            "shop_consumer_events_total{{service=\"inventory-service\",outcome=\"processed\"}} {processed}\n\
             shop_consumer_events_total{{service=\"inventory-service\",outcome=\"dead_lettered\"}} 1\n\
             shop_order_to_effect_seconds_bucket{{le=\"0.05\"}} {settled}\n\
             shop_order_to_effect_seconds_bucket{{le=\"+Inf\"}} {settled}\n\
             shop_order_to_effect_seconds_sum 0\n\
             shop_order_to_effect_seconds_count {settled}\n"
        );
        Snapshot::from_text(&text).unwrap()
    }

    #[test]
    fn a_service_has_done_its_work_when_it_has_settled_the_orders_not_processed_as_many_events() {
        let before = snapshot(1_000, 400);
        // 100 orders placed: 100 order_placed processed, 50 of their ends so far.
        let halfway = snapshot(1_150, 450);
        assert_eq!(settled_since(&halfway, &before), 50);
        let all = snapshot(1_200, 500);
        assert_eq!(settled_since(&all, &before), 100);
    }

    #[test]
    fn a_finished_service_reports_orders_and_events_per_second_apart() {
        let before = snapshot(1_000, 400);
        let after = snapshot(1_200, 500);
        let done = completion(
            "http://inventory",
            &before,
            Some(&after),
            Some(Duration::from_secs(2)),
            100,
            None,
        );
        assert!(done.complete);
        assert_eq!(
            (done.settled, done.processed, done.dead_lettered),
            (100, 200, 0)
        );
        assert_eq!(done.orders_per_second, Some(50.0));
        assert_eq!(done.events_per_second, Some(100.0));
        assert_eq!(done.order_to_effect.unwrap().count, 100.0);
        assert_eq!(done.error, None);
    }

    #[test]
    fn a_service_that_restarted_during_the_run_says_so() {
        let before = snapshot(1_000, 400);
        let restarted = snapshot(10, 5);
        let c = completion(
            "http://inventory",
            &before,
            Some(&restarted),
            None,
            100,
            None,
        );
        assert!(!c.complete);
        assert_eq!(c.settled, 0);
        assert!(c.error.unwrap().contains("restart"));
    }

    #[test]
    fn a_drain_is_timed_from_the_first_event_processed_to_the_last_order_settled() {
        let t0 = Instant::now();
        let mut watch = Watch::default();
        watch.observe(t0, snapshot(0, 0), 100);
        assert!(watch.first.is_none());
        watch.observe(t0 + Duration::from_secs(1), snapshot(20, 0), 100);
        // Every order_placed processed but not every order settled: not done yet.
        watch.observe(t0 + Duration::from_secs(2), snapshot(160, 60), 100);
        assert!(watch.done.is_none());
        watch.observe(t0 + Duration::from_secs(5), snapshot(220, 100), 100);
        let c = watch.into_completion("http://inventory");
        assert!(c.complete);
        assert_eq!(c.service, "inventory-service");
        assert_eq!(c.elapsed, Some(Duration::from_secs(4)));
        assert_eq!(c.orders_per_second, Some(25.0));
        assert_eq!(c.events_per_second, Some(50.0));
        assert_eq!((c.settled, c.processed, c.dead_lettered), (100, 220, 1));
    }

    #[test]
    fn a_drain_done_at_its_first_sign_of_progress_cannot_be_timed() {
        let mut watch = Watch::default();
        watch.observe(Instant::now(), snapshot(200, 100), 100);
        let c = watch.into_completion("http://inventory");
        assert!(c.complete);
        assert_eq!(c.orders_per_second, None);
        assert!(c.error.unwrap().contains("too fast to time"));
    }
}
