use std::time::Duration;

use clap::{Args, Parser, Subcommand};

const DEFAULT_SERVICES: &str =
    "http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083,http://127.0.0.1:8084";

#[derive(Parser, Debug)]
#[command(
    name = "shop-load",
    about = "Places orders on the Order Service and measures how long the consumer services take to act on them",
    long_about = "Places orders on the Order Service at a fixed rate (open loop: each order has a \
        scheduled start and its latency is measured from it, so a stall is not hidden by the \
        client waiting politely) or as fast as it can (--rate max), then waits until each \
        consumer service has settled the accepted orders and reports the time that took and \
        each service's order→effect latency.\n\n\
        A service has settled an order when it has committed its part of the order's end \
        (order_confirmed or order_cancelled). Each service's /metrics counts that in its \
        <svc>_order_to_effect_seconds histogram, one observation per order, timed from when the \
        order was placed: completion is the growth of that histogram's _count between a scrape \
        before the run and one after. Events processed (shop_consumer_events_total) are \
        reported as throughput only, since each service handles a different number of events \
        per order. It assumes no other traffic reaches those services during the run.\n\n\
        The services to watch are those that consume the orders' ends (Inventory, Payment, \
        Email, Analytics), not the Order Service, which publishes them.\n\n\
        The orders are small: one unit of one or two SKUs, with the default SKUs at most \
        119.98 EUR, far under the 1,000.00 EUR above which the Payment Service declines, so a \
        run measures the happy path (orders confirmed) for as long as the Inventory has the \
        stock: its catalog stock (1,000 keyboards) lasts about 2,000 orders, so start it with \
        INVENTORY_INITIAL_STOCK set high for a long run, as scripts/bench.sh does. An order it \
        cannot cover, or one the Payment Service declines, ends cancelled: still settled, so it \
        still counts, but through the compensation path.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Places no orders: measures how fast each service works off a backlog of orders already
    /// on the topic, from the first event it reports processed until it has settled them all.
    Drain(DrainArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The Order Service's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Orders per second, or `max` for as fast as the Order Service answers (then
    /// latency is measured from each request's actual start).
    #[arg(long, default_value = "100", value_parser = parse_rate)]
    pub rate: Rate,
    /// How long to place orders, e.g. 30s, 2m, 500ms [default: 10s].
    #[arg(long, value_parser = parse_duration, conflicts_with = "count")]
    pub duration: Option<Duration>,
    /// How many orders to place, instead of a duration.
    #[arg(long)]
    pub count: Option<u64>,
    /// Most requests in flight at once; a scheduled order waits for a free slot, and the
    /// wait counts in its latency.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,
    /// Retries of an order whose attempt failed (transport error, 5xx, 409), with the same
    /// Idempotency-Key, so a retry never places a second order. A 503's Retry-After is honoured.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// Time-out of one attempt.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// SKUs the orders buy, one unit each, in rotation (every second order buys two SKUs).
    /// Keep orders under the Payment Service's 1,000.00 EUR limit and within the stock, or
    /// they end cancelled rather than confirmed.
    #[arg(long, value_delimiter = ',', default_value = "KB-001,MS-002,CB-005")]
    pub skus: Vec<String>,
    /// The consumer services' base URLs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_SERVICES)]
    pub services: Vec<String>,
    /// Do not wait for the services; report only the POSTs.
    #[arg(long)]
    pub no_completion: bool,
    /// How long to wait, after the last answer, for every service to settle the orders.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub completion_timeout: Duration,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DrainArgs {
    /// Orders in the backlog: each service must have settled that many (since it started,
    /// confirmed or cancelled) for its backlog to be gone.
    #[arg(long)]
    pub orders: u64,
    /// The consumer services' base URLs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_SERVICES)]
    pub services: Vec<String>,
    /// How long to wait for every service to finish, including its start-up.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    PerSecond(f64),
    Max,
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rate::PerSecond(r) => write!(f, "{r}/s"),
            Rate::Max => f.write_str("max"),
        }
    }
}

pub fn parse_rate(s: &str) -> Result<Rate, String> {
    if s.eq_ignore_ascii_case("max") {
        return Ok(Rate::Max);
    }
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(Rate::PerSecond(r)),
        _ => Err(format!("`{s}`: expected orders per second (> 0) or `max`")),
    }
}

/// `250ms`, `10s`, `2m`, or bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((s, "s"), |at| s.split_at(at));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{s}`: expected a duration such as 500ms, 30s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (ms, s or m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{s}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_rate_is_a_positive_number_or_max() {
        assert_eq!(parse_rate("1000"), Ok(Rate::PerSecond(1000.0)));
        assert_eq!(parse_rate("0.5"), Ok(Rate::PerSecond(0.5)));
        assert_eq!(parse_rate("MAX"), Ok(Rate::Max));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("-3").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn durations_take_milliseconds_seconds_minutes_or_bare_seconds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn without_a_subcommand_the_flags_describe_a_load_run() {
        let cli = Cli::try_parse_from(["shop-load", "--rate", "max", "--count", "5"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.rate, Rate::Max);
        assert_eq!(cli.run.count, Some(5));
        assert_eq!(cli.run.services.len(), 4);
        assert_eq!(cli.run.skus, ["KB-001", "MS-002", "CB-005"]);
    }

    #[test]
    fn a_duration_and_a_count_exclude_each_other() {
        let err = Cli::try_parse_from(["shop-load", "--duration", "5s", "--count", "5"]);
        assert!(err.is_err());
    }

    #[test]
    fn drain_takes_the_backlog_size_and_a_list_of_services() {
        let cli = Cli::try_parse_from([
            "shop-load",
            "drain",
            "--orders",
            "100000",
            "--services",
            "http://a:1,http://b:2",
        ])
        .unwrap();
        let Some(Command::Drain(args)) = cli.command else {
            panic!("not drain")
        };
        assert_eq!(args.orders, 100_000);
        assert_eq!(args.services, ["http://a:1", "http://b:2"]);
    }

    #[test]
    fn the_default_orders_stay_far_below_the_amount_the_payment_service_declines() {
        // The Payment Service declines orders over 1,000.00 EUR.
        const DECLINED_ABOVE_CENTS: i64 = 100_000;
        let cli = Cli::try_parse_from(["shop-load"]).unwrap();
        let price = |sku: &str| {
            shop_contract::catalog::PRODUCTS
                .iter()
                .find(|p| p.sku == sku)
                .map(|p| p.unit_price_cents)
                .unwrap_or_else(|| panic!("{sku} is not in the catalog"))
        };
        // The rotation repeats after as many orders as there are SKUs, times two.
        let largest = (0..2 * cli.run.skus.len() as u64)
            .map(|i| {
                let body: serde_json::Value =
                    serde_json::from_slice(&crate::load::order_body(i, &cli.run.skus)).unwrap();
                body["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|item| {
                        price(item["sku"].as_str().unwrap()) * item["quantity"].as_i64().unwrap()
                    })
                    .sum::<i64>()
            })
            .max()
            .unwrap();
        assert_eq!(
            largest, 11_998,
            "the help text quotes the largest default order"
        );
        assert!(largest * 5 < DECLINED_ABOVE_CENTS);
    }

    #[test]
    fn the_default_skus_are_in_the_catalog_with_plenty_of_stock() {
        let cli = Cli::try_parse_from(["shop-load"]).unwrap();
        for sku in &cli.run.skus {
            let product = shop_contract::catalog::PRODUCTS
                .iter()
                .find(|p| p.sku == sku)
                .unwrap_or_else(|| panic!("{sku} is not in the catalog"));
            assert!(product.initial_stock >= 1_000, "{sku}: little stock");
        }
    }
}
