use shared_events::config::ServiceSettings;
use shared_events::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = ServiceSettings::from_env(payment_service::IDENTITY);
    telemetry::init(settings.log_format);
    let app = payment_service::build(settings).await?;
    app.run_until_stopped(telemetry::shutdown_on_signal()).await
}
