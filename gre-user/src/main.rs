//! `xgre`: GRE tunnels and per-packet link aggregation in eBPF.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{bail, Context, Result};
use clap::{FromArgMatches, Parser, Subcommand};
use gre_user::{
    config::{edit::Edit, Config, Origin},
    control::{self, UpOutcome},
    datapath::Datapath,
    net::{self, Netlink},
    observe,
};

#[derive(Parser)]
#[command(name = "xgre", version, about = "GRE tunnels and per-packet link aggregation in eBPF")]
struct Cli {
    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// With `run`, `status --watch` or `exporter`: also print the
    /// datapath's own messages (aya-log): every drop and its reason.
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate the config, create the tunnel, load and attach the datapath,
    /// and return with it running.
    Up {
        /// The config file (TOML; see docs/config.md).
        #[arg(short, long)]
        config: PathBuf,
        /// Also pin the maps under /sys/fs/bpf/xgre/net<netns inode>/ for
        /// bpftool and scripts (mounting bpffs if needed). The datapath
        /// never depends on pins.
        #[arg(long)]
        pin: bool,
    },
    /// `up`, then stay in the foreground (for systemd) keeping the path
    /// table current: links that lose carrier or stop answering keepalives
    /// leave the rotation and rejoin when well. SIGTERM/SIGINT: `down`.
    Run {
        /// The config file (TOML; see docs/config.md).
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Remove everything `up` made: programs, device, map entries, pins.
    Down {
        /// The config file (TOML; see docs/config.md).
        #[arg(short, long, conflicts_with = "name")]
        config: Option<PathBuf>,
        /// Tunnel name (instead of -c).
        name: Option<String>,
    },
    /// Apply the difference between the running tunnel and FILE, without
    /// reloading programs or touching what did not change.
    Reload {
        /// The config file (TOML; see docs/config.md).
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Print a running tunnel as a config file (`up -c` of it reproduces it).
    Show {
        /// The tunnel.
        name: String,
    },
    /// Edit a running tunnel live: each edit is checked like a config file
    /// and changes nothing when refused.
    MapEdit {
        /// The tunnel.
        #[arg(value_name = "TUNNEL")]
        name: String,
        /// Write the resulting config to FILE as well.
        #[arg(long, global = true)]
        save: Option<PathBuf>,
        /// Apply the edits in FILE, one per line (same words as the command
        /// line), each on its own.
        #[arg(long)]
        batch: Option<PathBuf>,
        #[command(subcommand)]
        edit: Option<Edit>,
    },
    /// Show tunnels, links, peers, paths and counters.
    Status {
        /// One tunnel (default: every tunnel in this network namespace).
        name: Option<String>,
        /// JSON for scripts instead of the table.
        #[arg(long)]
        json: bool,
        /// Redraw every --interval seconds with rates per peer and path.
        #[arg(long, conflicts_with = "json")]
        watch: bool,
        /// Seconds between screens with --watch.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Stop after this many screens (0: until Ctrl-C).
        #[arg(long, default_value_t = 0)]
        count: u32,
    },
    /// Serve the counters in the Prometheus text format at /metrics.
    Exporter {
        /// The address and port to serve on.
        #[arg(long, default_value = "127.0.0.1:9477")]
        listen: String,
    },
    /// Print shell completions (bash, zsh, fish, ...).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into a
    /// directory (xgre.1, xgre-up.1, ...).
    Man {
        /// Write every page (`xgre.1` and one per subcommand) here instead.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Validate a config file and the devices it names; change nothing.
    /// With --kernel, also load every datapath program into this kernel
    /// (verified, never attached) and print what verifying each cost.
    #[command(group = clap::ArgGroup::new("what").required(true).multiple(true).args(["config", "kernel"]))]
    Check {
        /// The config file to validate.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Verify the datapath in this kernel.
        #[arg(long)]
        kernel: bool,
    },
}

/// The command line as clap builds it from `Cli`, with the tunnel in the
/// usage of every edit: clap names a parent's required arguments in its
/// children's usage but not its grandchildren's, and `xgre map-edit peer
/// add NAME` would lose the tunnel the words before it name.
fn command() -> clap::Command {
    fn name_tunnel(built: &mut clap::Command, mut cmd: clap::Command) -> clap::Command {
        let names: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_string()).collect();
        for n in names {
            let Some(b) = built.find_subcommand_mut(&n) else { continue };
            let usage = b.render_usage().to_string();
            let usage = usage.trim_start_matches("Usage: ");
            let usage =
                if usage.contains("<TUNNEL>") { usage.to_string() } else { usage.replacen("xgre map-edit ", "xgre map-edit <TUNNEL> ", 1) };
            cmd = cmd.mut_subcommand(&n, |sc| name_tunnel(b, sc.override_usage(usage)));
        }
        cmd
    }
    let mut built = <Cli as clap::CommandFactory>::command();
    built.build();
    let edits = built.find_subcommand_mut("map-edit").expect("map-edit is a command");
    <Cli as clap::CommandFactory>::command().mut_subcommand("map-edit", |m| name_tunnel(edits, m))
}

fn main() -> ExitCode {
    // A reader that goes away (`xgre status | head -1`) ends the command
    // quietly, as it ends any Unix tool, instead of a panic on EPIPE.
    // SAFETY: restoring a signal's default disposition, before any thread
    // exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let level = match (cli.verbose, cli.debug) {
        // The datapath's messages arrive through `log` with the eBPF
        // binary's name as their target.
        (0, true) => "warn,gre=debug",
        (0, false) => "warn",
        (1, _) => "info,gre=debug",
        _ => "debug",
    };
    let debug = cli.debug;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into()))
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xgre: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.cmd, debug)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xgre: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The namespace's datapath, maps only: for readers and the debug
/// listener, which need no program loaded again (that costs a verifier
/// run per program missing).
fn running_maps() -> Result<Datapath> {
    Datapath::find()?.ok_or_else(|| anyhow::anyhow!("no xgre tunnel is up in this network namespace"))
}

fn running() -> Result<(Netlink, Datapath)> {
    let dp = Datapath::find()?.ok_or_else(|| anyhow::anyhow!("no xgre tunnel is up in this network namespace"))?;
    Ok((Netlink::new()?, dp))
}

async fn run(cmd: Cmd, debug: bool) -> Result<()> {
    match cmd {
        Cmd::Up { config, pin } => {
            let cfg = Config::load(&config)?;
            advise(&cfg, &config);
            match control::up(&cfg, &config.display().to_string(), pin).await? {
                UpOutcome::AlreadyUp => println!("{}: already up with this configuration", cfg.tunnel.name),
                UpOutcome::Created { ifindex, mtu, hooks } => {
                    let hooks: Vec<String> = hooks.iter().map(|(d, h)| format!("{d}:{h}")).collect();
                    println!("{}: up (ifindex {ifindex}, mtu {mtu}, {} peer(s), rx {})", cfg.tunnel.name, cfg.peers.len(), hooks.join(" "));
                }
            }
        }
        Cmd::Run { config } => {
            let cfg = Config::load(&config)?;
            advise(&cfg, &config);
            gre_user::daemon::run(cfg, &config.display().to_string(), debug).await?;
        }
        Cmd::Down { config, name } => {
            let name = match (config, name) {
                (Some(c), _) => Config::load(&c)?.tunnel.name,
                (None, Some(n)) => n,
                (None, None) => bail!("down: give -c FILE or a tunnel NAME"),
            };
            let was_up = control::down(&name).await?;
            // What a `run` killed without its own clean-up left for `status`.
            gre_user::mesh::remove_status(&name);
            if was_up {
                println!("{name}: down");
            } else {
                println!("{name}: not up; nothing to do");
            }
        }
        Cmd::Reload { config } => {
            reload(config).await?;
        }
        Cmd::Show { name } => {
            net::require_root("show")?;
            let (nl, dp) = running()?;
            let run = control::show(&dp, &nl, &name).await?;
            println!("# xgre show {name}: the running state as a config file");
            let mesh: Vec<&str> = run.config.peers.iter().filter(|p| p.origin == Origin::Mesh).map(|p| p.name.as_str()).collect();
            if !mesh.is_empty() {
                println!("# and {} peer(s) from the mesh (etcd), not written here: {}", mesh.len(), mesh.join(", "));
            }
            print!("{}", run.config.without_mesh_peers().to_toml());
        }
        Cmd::MapEdit { name, save, batch, edit } => {
            map_edit(name, save, batch, edit).await?;
        }
        Cmd::Status { name, json: _, watch: true, interval, count } => {
            watch(name, interval, count, debug).await?;
        }
        Cmd::Exporter { listen } => {
            net::require_root("exporter")?;
            let _log = match debug {
                true => Some(gre_user::datapath::listen_to_log(&running_maps()?)?),
                false => None,
            };
            observe::serve(&listen).await?;
        }
        Cmd::Completions { shell } => {
            let mut cmd = command();
            clap_complete::generate(shell, &mut cmd, "xgre", &mut std::io::stdout());
        }
        Cmd::Man { dir } => {
            let cmd = command();
            match dir {
                Some(d) => {
                    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
                    clap_mangen::generate_to(cmd, &d).with_context(|| format!("writing man pages into {}", d.display()))?;
                }
                None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout()).context("rendering the man page")?,
            }
        }
        Cmd::Status { name, json, .. } => {
            net::require_root("status")?;
            let s = observe::collect(name.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s).context("encoding JSON")?);
            } else {
                print!("{}", observe::render(&s));
            }
        }
        Cmd::Check { config, kernel } => {
            check(config, kernel).await?;
        }
    }
    Ok(())
}

/// `check --kernel`: every program verified here, and its cost against the
/// verifier's limit.
fn check_kernel() -> Result<()> {
    net::require_root("check --kernel")?;
    let kernel = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    let costs = Datapath::verifier_costs()?;
    println!("{:<18} {:>10}  of the verifier's 1,000,000", "program", "verified");
    let mut loaded = 0;
    for c in &costs {
        match &c.verified {
            Ok(n) => {
                loaded += 1;
                println!("{:<18} {n:>10}  {:>5.1}%", c.name, *n as f64 / 1e4);
            }
            Err(e) => println!("{:<18} {:>10}  {e}", c.name, "refused"),
        }
    }
    let stand_in = if loaded < costs.len() { format!("; XDP receive takes {}", gre_common::names::PROG_RX_XDP_NM) } else { String::new() };
    println!("Linux {kernel} accepts the datapath ({loaded} of {} programs{stand_in})", costs.len());
    Ok(())
}

/// A valid config that will not do what its author likely wants: said on
/// stderr, and the command goes on.
fn advise(cfg: &Config, file: &std::path::Path) {
    for a in cfg.advice(&file.display().to_string()) {
        tracing::warn!("{a}");
    }
}

/// `map-edit`: one edit or a batch, all or nothing.
async fn map_edit(name: String, save: Option<PathBuf>, batch: Option<PathBuf>, edit: Option<Edit>) -> Result<()> {
    net::require_root("map-edit")?;
    let edits: Vec<(String, Edit)> = match (batch, edit) {
        (Some(_), Some(_)) => bail!("map-edit: give one edit or --batch FILE, not both"),
        (Some(f), None) => gre_user::config::edit::read_batch(&f)?,
        (None, Some(e)) => vec![(format!("map-edit {name}"), e)],
        (None, None) => bail!("map-edit: give an edit (peer, path, route, neigh, key, group) or --batch FILE"),
    };
    let (nl, dp) = running()?;
    let mut run = control::show(&dp, &nl, &name).await?;
    let start = std::time::Instant::now();
    control::apply_edits(&nl, &dp, &mut run, &edits).await?;
    if let Some(f) = save {
        std::fs::write(&f, run.config.without_mesh_peers().to_toml()).with_context(|| format!("writing {}", f.display()))?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{name}: {} edit(s) applied in {:.3} s ({:.0}/s)", edits.len(), secs, edits.len() as f64 / secs.max(1e-9));
    Ok(())
}

/// `status --watch`: a screen of rates every `interval` seconds.
async fn watch(name: Option<String>, interval: f64, count: u32, debug: bool) -> Result<()> {
    net::require_root("status")?;
    let _log = match debug {
        true => Some(gre_user::datapath::listen_to_log(&running_maps()?)?),
        false => None,
    };
    let mut prev = observe::collect(name.as_deref()).await?;
    let mut shown = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs_f64(interval.max(0.1))) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        let cur = observe::collect(name.as_deref()).await?;
        // Clear the screen and draw from the top.
        print!("\x1b[2J\x1b[H{}", observe::render_watch(&prev, &cur, interval.max(0.1)));
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        prev = cur;
        shown += 1;
        if count > 0 && shown >= count {
            break;
        }
    }
    Ok(())
}

/// `check`: a config and the devices it names, changing nothing.
async fn check(config: Option<PathBuf>, kernel: bool) -> Result<()> {
    if kernel {
        check_kernel()?;
    }
    let Some(config) = config else {
        return Ok(());
    };
    let file = config.display().to_string();
    let cfg = Config::load(&config)?;
    let nl = Netlink::new()?;
    for (i, l) in cfg.links.iter().enumerate() {
        if nl.link(&l.dev).await?.is_none() {
            bail!("{file}: link[{i}].dev: no device named `{}` in this network namespace", l.dev);
        }
    }
    let tun = nl.link(&cfg.tunnel.name).await?.map(|l| l.index).unwrap_or(0);
    control::check_routes(&nl, &cfg, tun, &file).await?;
    let links = control::resolve_links(&nl, &cfg, &file).await?;
    control::tunnel_mtu(&cfg, links.values().map(|l| l.mtu).min().unwrap_or(1500), &file)?;
    println!("{file}: ok ({} link(s), {} peer(s))", cfg.links.len(), cfg.peers.len());
    for a in cfg.advice(&file) {
        println!("warning: {a}");
    }
    Ok(())
}

/// `reload`: apply what changed in the file to the running tunnel.
async fn reload(config: PathBuf) -> Result<()> {
    net::require_root("reload")?;
    let file = config.display().to_string();
    let want = Config::load(&config)?;
    let (nl, dp) = running()?;
    let mut run = control::show(&dp, &nl, &want.tunnel.name).await?;
    if run.config.fingerprint() == want.fingerprint() {
        println!("{}: no changes", want.tunnel.name);
    } else {
        let done = control::apply(&nl, &dp, &mut run, &want, &file).await?;
        println!("{}: reloaded ({})", want.tunnel.name, done.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The systemd unit's command lines are ones this binary accepts.
    #[test]
    fn systemd_unit_commands_parse() {
        let unit = include_str!("../../dist/xgre@.service");
        let mut n = 0;
        for line in unit.lines() {
            let Some(cmd) = line.strip_prefix("ExecStart=").or_else(|| line.strip_prefix("ExecReload=")) else { continue };
            let words: Vec<&str> = cmd.split_whitespace().collect();
            assert!(words[0].ends_with("/xgre"), "{cmd}");
            Cli::try_parse_from(&words).unwrap_or_else(|e| panic!("`{cmd}`: {e}"));
            n += 1;
        }
        assert_eq!(n, 2);
    }

    /// Every argument of every command says what it is for.
    #[test]
    fn every_option_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments().filter(|a| a.get_help().is_none() && !matches!(a.get_id().as_str(), "help" | "version")) {
                missing.push(format!("{path}: {}", a.get_id()));
            }
            for sc in cmd.get_subcommands() {
                walk(sc, &format!("{path} {}", sc.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&command(), "xgre", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }

    /// `--help` of every edit, as a user asks for it, shows a usage line
    /// that names the tunnel.
    #[test]
    fn every_edit_usage_names_the_tunnel() {
        let cmd = command();
        let edits = cmd.find_subcommand("map-edit").unwrap();
        let mut n = 0;
        for group in edits.get_subcommands().filter(|c| c.get_name() != "help") {
            for leaf in group.get_subcommands().filter(|c| c.get_name() != "help") {
                let argv = ["xgre", "map-edit", "t0", group.get_name(), leaf.get_name(), "--help"];
                let help = command().try_get_matches_from(argv).unwrap_err().to_string();
                assert!(
                    help.contains(&format!("Usage: xgre map-edit <TUNNEL> {} {}", group.get_name(), leaf.get_name())),
                    "{argv:?}:\n{help}"
                );
                n += 1;
            }
        }
        assert!(n >= 18, "{n} edits");
    }

    #[test]
    fn completions_and_man_page_generate() {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        let mut out = Vec::new();
        clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "xgre", &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("map-edit") && s.contains("reload"), "bash completion lacks subcommands");
        let mut man = Vec::new();
        clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut man).unwrap();
        let m = String::from_utf8(man).unwrap();
        assert!(m.contains(".TH xgre") && m.contains("map\\-edit"), "{}", &m[..200.min(m.len())]);
    }

    #[test]
    fn every_page_the_man_page_names_is_written() {
        let dir = std::env::temp_dir().join(format!("xgre-man-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), &dir).unwrap();
        let top = std::fs::read_to_string(dir.join("xgre.1")).unwrap();
        for sub in ["up", "run", "down", "reload", "show", "map-edit", "status", "exporter", "check", "man"] {
            let page = dir.join(format!("xgre-{sub}.1"));
            assert!(page.exists(), "{} is written", page.display());
            assert!(top.contains(&format!("xgre\\-{}(1)", sub.replace('-', "\\-"))), "xgre(1) names xgre-{sub}(1)");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
