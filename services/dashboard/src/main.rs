use clap::Parser;
use shared_events::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = dashboard::Config::parse().resolve();
    telemetry::init(settings.log_format);
    let app = dashboard::Dashboard::build(settings).await?;
    app.run_until_stopped(telemetry::shutdown_on_signal()).await
}
