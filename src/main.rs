//! The `flowcloud` command: serve (default), migrate, schema, agent.
use clap::{Parser, Subcommand};
use flowcloud::{Application, Config};
use tracing_subscriber::EnvFilter;

// Allocation is a large share of request handling; mimalloc is markedly faster than the system
// allocator under concurrent load. Its `override` feature serves SQLite's C allocations too: a
// page of runs copies every column value through malloc (-8% instructions per page, callgrind).
// Its `no_thp` feature keeps it from asking for transparent huge pages (see
// `disable_transparent_huge_pages`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "flowcloud",
    version,
    about = "A self-hostable orchestration cloud (GraphQL API server)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations, start the background services and serve HTTP + websockets.
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Print the GraphQL SDL.
    Schema,
    /// Run flow runs of a work queue as local shell commands (talks to a server over GraphQL).
    Agent(flowcloud::agent::AgentArgs),
}

fn main() {
    let huge_pages_off = flowcloud::app::disable_transparent_huge_pages();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => match err.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                let _ = err.print();
                std::process::exit(0);
            }
            _ => {
                eprintln!("flowcloud: {}", config_error_line(&err));
                std::process::exit(2);
            }
        },
    };
    if let Some(Command::Schema) = cli.command {
        print!("{}", flowcloud::graphql::sdl());
        return;
    }
    let filter = match EnvFilter::try_new(&cli.config.log) {
        Ok(f) => f,
        Err(err) => fail(&format!("FLOWCLOUD_LOG: {err}")),
    };
    if matches!(cli.command, Some(Command::Agent(_))) {
        // The agent's story goes to stderr; stdout stays free for whatever wraps it.
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    if let Err(err) = huge_pages_off {
        tracing::debug!(error = %err, "transparent huge pages stay on");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => fail(&format!("cannot start the async runtime: {err}")),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Some(Command::Migrate) => {
                let db = flowcloud::db::Db::connect(&cli.config.database_url).await?;
                flowcloud::app::migrate(&db).await?;
                tracing::info!("migrations applied");
                Ok(())
            }
            Some(Command::Agent(args)) => flowcloud::agent::run(args, shutdown_signal()).await,
            _ => {
                let app = Application::build(cli.config).await?;
                app.run_until_stopped(shutdown_signal())
                    .await
                    .map_err(|e| format!("server error: {e}"))
            }
        }
    });
    if let Err(message) = result {
        fail(&message);
    }
}

/// One line naming the variable and what is wrong, never a usage dump, a panic trace or the
/// rejected value itself (it may be a secret or a URL with a password).
fn config_error_line(err: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let arg = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => arg.clone(),
        _ => String::new(),
    };
    // `--late-after-seconds <FLOWCLOUD_LATE_AFTER_SECONDS>` names the variable in brackets.
    let variable = arg
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(name, _)| name.to_owned())
        .unwrap_or(arg);
    let reason = std::error::Error::source(err)
        .map(|source| source.to_string())
        .unwrap_or_else(|| {
            let text = err.to_string();
            let mut lines = text.lines();
            let first = lines.next().unwrap_or("invalid configuration");
            let first = first.trim_start_matches("error: ").to_owned();
            if first.ends_with(':') {
                // "the following required arguments were not provided:" + indented names.
                let names: Vec<&str> = lines
                    .take_while(|l| l.starts_with(' '))
                    .map(str::trim)
                    .collect();
                format!("{first} {}", names.join(", "))
            } else {
                first
            }
        });
    let is_value_error = matches!(
        err.kind(),
        clap::error::ErrorKind::ValueValidation | clap::error::ErrorKind::InvalidValue
    );
    if variable.is_empty() || !is_value_error {
        reason
    } else {
        format!("{variable}: invalid value: {reason}")
    }
}

fn fail(message: &str) -> ! {
    eprintln!("flowcloud: {message}");
    std::process::exit(1);
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is called rather than
/// when the future is first polled, so a signal in between is not lost: it would otherwise
/// end the process at once, skipping the shutdown (the leader lease stays held).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (mut terminate, mut interrupt) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        tokio::select! {
            _ = received(terminate.as_mut()) => {},
            _ = received(interrupt.as_mut()) => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    }
}

/// The next delivery of `signal`; never, if its handler could not be installed.
#[cfg(unix)]
async fn received(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}
