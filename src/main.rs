//! The authgate binary: parses arguments, sets up logging, and calls `authgate::run`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "An authentication sidecar: JWT login, refresh, logout and guarded routes in front of an HTTP app"
)]
struct Cli {
    /// The configuration file.
    #[arg(
        long,
        short,
        global = true,
        env = "AUTHGATE_CONFIG",
        default_value = "config/authgate.toml"
    )]
    config: PathBuf,
    /// Log one JSON object per line instead of human-readable lines (also `[log] format = "json"`).
    #[arg(long, global = true)]
    json_logs: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the gate (the default).
    Run,
    /// Validates the configuration: exits 0, or prints every problem and exits 1.
    Check,
    /// Shows what a request would meet: normalised path, matching rule, decision.
    Explain {
        /// e.g. GET
        method: String,
        /// e.g. /public/../private?x=1
        target: String,
    },
    /// Prints a new private key (PKCS#8 PEM) for asymmetric tokens or identity assertions. Needs
    /// no configuration.
    Keygen {
        /// EdDSA (Ed25519), ES256 (P-256) or RS256 (RSA, 3072 bits).
        #[arg(long, default_value = "EdDSA")]
        algorithm: String,
    },
    /// Manages the users of the store the configuration names (every replica hears of it).
    Users {
        #[command(subcommand)]
        action: UsersAction,
    },
}

#[derive(Subcommand)]
enum UsersAction {
    /// Creates a user, under the rules `/register` applies.
    Add {
        name: String,
        /// A role to give the user (repeat for several).
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        /// Reads the password from the first line of standard input (never from an argument,
        /// where other users of the machine could see it).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Lists the users: name, id, roles, disabled, created, last login, live sessions.
    List {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Sets a user's password and revokes all their sessions.
    ResetPassword {
        name: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Revokes all of a user's sessions: "log out everywhere", for them.
    Logout { name: String },
    /// Replaces a user's roles; sessions get them at their next refresh.
    SetRoles {
        name: String,
        #[arg(required_unless_present = "clear", value_name = "ROLE")]
        roles: Vec<String>,
        /// Takes every role away.
        #[arg(long, conflicts_with = "roles")]
        clear: bool,
    },
    /// Disables a user: no login or refresh, and all their sessions revoked.
    Disable { name: String },
    /// Lets a disabled user log in again.
    Enable { name: String },
    /// Lists a user's live sessions.
    Sessions {
        name: String,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    return_large_blocks_to_the_system();
    let cli = Cli::parse();
    if let Some(Command::Keygen { algorithm }) = &cli.command {
        return match authgate::keygen::private_key_pem(algorithm) {
            Ok(pem) => {
                print!("{pem}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("authgate keygen: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match authgate::Config::load(&cli.config) {
        Ok(config) => config,
        Err(problems) => {
            eprintln!("{}: the configuration has problems:", cli.config.display());
            for problem in &problems.0 {
                eprintln!("  - {problem}");
            }
            return ExitCode::FAILURE;
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => {
            for warning in &config.warnings {
                eprintln!("warning: {warning}");
            }
            println!(
                "{}: ok ({} routes)",
                cli.config.display(),
                config.routes.rules().len()
            );
            ExitCode::SUCCESS
        }
        Command::Explain { method, target } => {
            println!("{}", authgate::explain(&config, &method, &target));
            ExitCode::SUCCESS
        }
        Command::Run => run(config, cli.json_logs),
        Command::Keygen { .. } => unreachable!("answered before the configuration is read"),
        Command::Users { action } => users(&config, action),
    }
}

/// `authgate users …`: prints what was done and exits 0, or says why not and exits 1.
fn users(config: &authgate::Config, action: UsersAction) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let done: Result<String, authgate::admin::AdminError> = runtime.block_on(async {
        match action {
            UsersAction::Add { name, roles, .. } => {
                let password = password_from_stdin()?;
                let id = authgate::admin::add_user(config, &name, password, &roles).await?;
                Ok(format!("added {name} ({id})"))
            }
            UsersAction::List { json } => {
                let users = authgate::admin::list_users(config).await?;
                Ok(users_table(&users, json))
            }
            UsersAction::ResetPassword { name, .. } => {
                let password = password_from_stdin()?;
                let revoked = authgate::admin::reset_password(config, &name, password).await?;
                Ok(format!(
                    "password of {name} reset; {revoked} sessions revoked"
                ))
            }
            UsersAction::Logout { name } => {
                let revoked = authgate::admin::end_sessions(config, &name).await?;
                Ok(format!("{revoked} sessions of {name} revoked"))
            }
            UsersAction::SetRoles { name, roles, .. } => {
                let roles = authgate::admin::set_roles(config, &name, &roles).await?;
                Ok(match roles.is_empty() {
                    true => format!("{name} has no role now"),
                    false => format!("roles of {name}: {}", roles.join(", ")),
                })
            }
            UsersAction::Disable { name } => {
                let revoked = authgate::admin::disable_user(config, &name).await?;
                Ok(format!("{name} disabled; {revoked} sessions revoked"))
            }
            UsersAction::Enable { name } => {
                authgate::admin::enable_user(config, &name).await?;
                Ok(format!("{name} enabled"))
            }
            UsersAction::Sessions { name, json } => {
                let sessions = authgate::admin::user_sessions(config, &name).await?;
                Ok(sessions_table(&sessions, json))
            }
        }
    });
    match done {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("authgate users: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The first line of standard input, without its line ending.
fn password_from_stdin() -> Result<String, authgate::admin::AdminError> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| {
        authgate::admin::AdminError::Refused(format!("cannot read the password: {e}"))
    })?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// The users as a table, or as JSON (times in unix seconds, `null` for never).
fn users_table(users: &[authgate::admin::UserSummary], json: bool) -> String {
    if json {
        let list: Vec<serde_json::Value> = users
            .iter()
            .map(|u| {
                serde_json::json!({
                    "username": u.username,
                    "id": u.id,
                    "roles": u.roles,
                    "disabled_at": u.disabled_at,
                    "created_at": u.created_at,
                    "last_login_at": u.last_login_at,
                    "live_sessions": u.live_sessions,
                })
            })
            .collect();
        return serde_json::Value::Array(list).to_string();
    }
    let mut out = format!(
        "{:<24} {:<36} {:<20} {:<20} {:<20} {:<20} {:>8}",
        "NAME", "ID", "ROLES", "DISABLED", "CREATED", "LAST LOGIN", "SESSIONS"
    );
    for u in users {
        let roles = match u.roles.is_empty() {
            true => "-".to_string(),
            false => u.roles.join(","),
        };
        out.push_str(&format!(
            "\n{:<24} {:<36} {:<20} {:<20} {:<20} {:<20} {:>8}",
            u.username,
            u.id,
            roles,
            when(u.disabled_at),
            when(Some(u.created_at)),
            when(u.last_login_at),
            u.live_sessions
        ));
    }
    out
}

/// A user's live sessions as a table, or as JSON (times in unix seconds, `null` for unknown).
fn sessions_table(sessions: &[authgate::admin::SessionSummary], json: bool) -> String {
    if json {
        let list: Vec<serde_json::Value> = sessions
            .iter()
            .map(|s| {
                serde_json::json!({
                    "sid": s.sid,
                    "created_at": s.created_at,
                    "refreshed_at": s.refreshed_at,
                    "expires_at": s.expires_at,
                })
            })
            .collect();
        return serde_json::Value::Array(list).to_string();
    }
    let mut out = format!(
        "{:<36} {:<20} {:<20} {:<20}",
        "SESSION", "STARTED", "LAST REFRESH", "EXPIRES"
    );
    for s in sessions {
        out.push_str(&format!(
            "\n{:<36} {:<20} {:<20} {:<20}",
            s.sid,
            when(s.created_at),
            when(s.refreshed_at),
            when(Some(s.expires_at))
        ));
    }
    out
}

/// A time for a table: UTC to the second, or `-` for never (or unknown).
fn when(unix_seconds: Option<u64>) -> String {
    match unix_seconds {
        Some(secs) => humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
        )
        .to_string(),
        None => "-".into(),
    }
}

fn run(config: authgate::Config, json_logs: bool) -> ExitCode {
    let logs = tracing_subscriber::fmt().with_env_filter(
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
    );
    if json_logs || config.log_format == authgate::LogFormat::Json {
        logs.json().flatten_event(true).init();
    } else {
        logs.init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(l) => l,
            Err(e) => {
                // Fatal start-up errors go to stderr too, where an operator looks first.
                eprintln!(
                    "authgate: cannot listen on {} (server.listen): {e}",
                    config.listen
                );
                tracing::error!(addr = %config.listen, error = %e, "cannot listen");
                return ExitCode::FAILURE;
            }
        };
        match authgate::run(listener, config, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("authgate: {e}");
                tracing::error!(error = %e, "authgate stopped");
                ExitCode::FAILURE
            }
        }
    })
}

/// glibc serves an allocation of 1 MiB or more with its own mapping, but after the first such block
/// is freed it raises that threshold to the block's size, and every later argon2 block (19 MiB per
/// login) then lands in a per-thread arena that is never given back. A fixed threshold keeps idle
/// memory at what idle needs.
fn return_large_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM can be watched");
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
