use clap::Parser;
use payment_service::Config;
use shared_events::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _telemetry = telemetry::init(config.common.log_format, payment_service::IDENTITY.name);
    let app = payment_service::build(config.into_settings()).await?;
    app.run_until_stopped(telemetry::shutdown_on_signal()).await
}
