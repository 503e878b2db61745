use clap::Parser;
use order_service::Config;
use shop_runtime::config::or_exit;
use shop_runtime::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let log_format = config.common.log_format;
    let settings = or_exit::<Config, _>(config.into_settings());
    let _telemetry = telemetry::init(log_format, order_service::IDENTITY.name);
    let app = order_service::build(settings).await?;
    app.run_until_stopped(telemetry::shutdown_on_signal()).await
}
