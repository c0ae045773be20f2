//! `testbed`: the ferrolb lab on this machine (as root).
//!
//!   testbed up        build the lab and leave it running (--api kube-apiserver: the real one)
//!   testbed down      remove it (and whatever a killed run left)
//!   testbed status    what runs
//!   testbed demo      up, apply examples/lab/, show each Service answered, down (--keep: stay up)
//!   testbed clab      write the containerlab topology generated from the description
//!   testbed chaos     up, faults and churn for --minutes with every invariant checked, down

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::{Parser, Subcommand};
use ferrolb_testbed::netns::{self, State};
use ferrolb_testbed::{Api, Lab, LabConfig, Topology, demo, listener};

#[derive(Parser)]
#[command(
    name = "testbed",
    about = "The ferrolb lab: a cluster's network on one machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Builds the lab and leaves it running.
    Up {
        /// The API server: fake-apiserver (fast, in memory) or kube-apiserver (the real one
        /// with etcd, built from Go modules the first time; ferrolb installed from manifests/).
        #[arg(long, default_value = "fake", value_parser = ["fake", "kube-apiserver"])]
        api: String,
    },
    /// Removes the lab: processes, namespaces, files.
    Down,
    /// Shows the lab's namespaces and processes.
    Status,
    /// Builds the lab, applies the examples, prints each Service and what clients got through
    /// it, and removes the lab (unless --keep).
    Demo {
        #[arg(long)]
        keep: bool,
        /// The API server, as for `up`.
        #[arg(long, default_value = "fake", value_parser = ["fake", "kube-apiserver"])]
        api: String,
        /// The manifests to apply.
        #[arg(long, default_value = "examples/lab")]
        examples: PathBuf,
    },
    /// Builds a lab of its own, injects faults drawn from --seed (several at once) while
    /// Services change, checks ferrolb's invariants the whole time and after the faults stop,
    /// prints the report and removes the lab. Fails when an invariant was violated.
    Chaos {
        #[arg(long, default_value_t = 3.0)]
        minutes: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The API server, as for `up`.
        #[arg(long, default_value = "fake", value_parser = ["fake", "kube-apiserver"])]
        api: String,
        /// The mean time between two faults' starts, in seconds.
        #[arg(long, default_value_t = 4.0)]
        fault_every: f64,
        /// The mean time between two changes to the Services, in seconds.
        #[arg(long, default_value_t = 3.0)]
        churn_every: f64,
        /// Leave the lab up afterwards (it is also left up after a violation).
        #[arg(long)]
        keep: bool,
    },
    /// Writes the containerlab topology generated from the description into --dir.
    Clab {
        #[arg(long, default_value = "testbed/clab")]
        dir: PathBuf,
    },
    /// (inside a node) The NodePort listener.
    Listen {
        #[arg(long)]
        name: String,
        #[arg(long = "address")]
        addresses: Vec<std::net::IpAddr>,
        #[arg(long, default_value = "30080-30179")]
        ports: String,
    },
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C or SIGTERM during a build tears the lab down instead of leaving half of it.
fn watch_signals() {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

fn how_to_reach(lab: &Lab) {
    let api = lab.ns(&lab.topology.api.name);
    println!("\nThe lab is up. From this machine, as root:");
    println!(
        "  ip netns exec {api} kubectl --kubeconfig {} get services -A",
        lab.kubeconfig().display()
    );
    println!(
        "  ip netns exec {} curl http://<address>/      (clients: {})",
        lab.ns("client-lan"),
        lab.topology
            .clients
            .iter()
            .map(|c| lab.ns(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  ip netns exec {} vtysh --vty_socket {} -c 'show ip bgp'",
        lab.ns("frr"),
        lab.dir.join("frr").display()
    );
    println!("  logs: {}", lab.dir.display());
    let me = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "testbed".into());
    println!("  remove it: {me} down");
}

/// The command's lab configuration on the API server named by `--api`.
fn config_with(api: &str) -> anyhow::Result<LabConfig> {
    let mut config = LabConfig::default_for_cli()?;
    config.api = match api {
        "kube-apiserver" => Api::KubeApiserver,
        _ => Api::Fake,
    };
    Ok(config)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Listen {
            name,
            addresses,
            ports,
        } => {
            let ports = listener::parse_ports(&ports)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(listener::serve(name, addresses, ports))
        }
        Cmd::Clab { dir } => {
            for (path, text) in ferrolb_testbed::clab::generate(&Topology::builtin()) {
                let p = dir.join(&path);
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&p, text)?;
                println!("wrote {}", p.display());
            }
            Ok(())
        }
        Cmd::Down => {
            ferrolb_testbed::lab::remove(&LabConfig::default_for_cli()?.prefix);
            println!("lab removed");
            Ok(())
        }
        Cmd::Status => {
            let config = LabConfig::default_for_cli()?;
            let dir = netns::state_dir(&config.prefix);
            let state = State::load(&dir.join("state.json"));
            let namespaces = netns::namespaces_with(&config.prefix);
            if namespaces.is_empty() {
                println!("no lab");
                return Ok(());
            }
            println!("namespaces: {}", namespaces.join(" "));
            for (what, pid) in &state.processes {
                let up = netns::alive(*pid);
                println!(
                    "  {what:<20} pid {pid:<8} {}",
                    if up { "running" } else { "gone" }
                );
            }
            Ok(())
        }
        Cmd::Up { api } => {
            watch_signals();
            let lab = Lab::up(Topology::builtin(), config_with(&api)?)?;
            if INTERRUPTED.load(Ordering::SeqCst) {
                return Ok(()); // dropping the lab removes it
            }
            how_to_reach(&lab);
            lab.keep();
            Ok(())
        }
        Cmd::Chaos {
            minutes,
            seed,
            api,
            fault_every,
            churn_every,
            keep,
        } => {
            watch_signals();
            let mut config = config_with(&api)?;
            if std::env::var("FERROLB_TESTBED_PREFIX").is_err() {
                // Not the lab of `testbed up`, which may be running.
                config.prefix = "ftc-".into();
            }
            println!(
                "==> building the lab on {}; chaos for {minutes} min, seed {seed}",
                config.api.name()
            );
            let mut lab = Lab::up(Topology::builtin(), config)?;
            lab.apply(
                "ferrolb",
                include_str!("../../examples/lab/10-ferrolb.yaml"),
            )?;
            let chaos = ferrolb_testbed::chaos::ChaosConfig {
                length: std::time::Duration::from_secs_f64(minutes * 60.0),
                seed,
                fault_every: std::time::Duration::from_secs_f64(fault_every),
                churn_every: std::time::Duration::from_secs_f64(churn_every),
                keep_processes: false,
                interrupted: Some(&INTERRUPTED),
            };
            let report = ferrolb_testbed::chaos::Chaos::new(&mut lab, chaos).run()?;
            println!("\n{}", report.summary());
            let violations = report.violations.len();
            if violations > 0 || keep {
                how_to_reach(&lab);
                lab.keep();
                anyhow::ensure!(violations == 0, "{violations} violations");
                return Ok(());
            }
            drop(lab);
            println!("lab removed");
            Ok(())
        }
        Cmd::Demo {
            keep,
            api,
            examples,
        } => {
            watch_signals();
            let config = config_with(&api)?;
            println!(
                "==> building the lab: 3 nodes, FRR and BIRD routers, 3 clients, {}, 2 controllers",
                config.api.name()
            );
            let started = std::time::Instant::now();
            let lab = Lab::up(Topology::builtin(), config)?;
            println!(
                "    up in {:.1} s; applying {}",
                started.elapsed().as_secs_f64(),
                examples.display()
            );
            let rows = demo::run(&lab, &examples, "demo").context("demo")?;
            println!("\n{}", demo::table(&rows));
            let unanswered = rows.iter().filter(|r| r.answer.is_none()).count();
            if keep && !INTERRUPTED.load(Ordering::SeqCst) {
                how_to_reach(&lab);
                lab.keep();
            } else {
                drop(lab);
                println!("\nlab removed");
            }
            anyhow::ensure!(
                unanswered == 0,
                "{unanswered} of {} requests got no answer",
                rows.len()
            );
            Ok(())
        }
    }
}
