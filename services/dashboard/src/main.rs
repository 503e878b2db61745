use clap::{CommandFactory, Parser};
use shop_runtime::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = dashboard::Config::parse()
        .resolve()
        .unwrap_or_else(|problem| {
            dashboard::Config::command()
                .error(clap::error::ErrorKind::ArgumentConflict, problem)
                .exit()
        });
    let _telemetry = telemetry::init(settings.log_format, "dashboard");
    let app = dashboard::build(settings).await?;
    app.run_until_stopped(telemetry::shutdown_on_signal()).await
}
