use shop_runtime::config::ServiceSettings;
use shop_runtime::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = ServiceSettings::from_env(analytics_service::IDENTITY);
    let _telemetry = telemetry::init(settings.log_format, analytics_service::IDENTITY.name);
    let app = analytics_service::build(settings).await?;
    app.run_until_stopped(telemetry::shutdown_on_signal()).await
}
