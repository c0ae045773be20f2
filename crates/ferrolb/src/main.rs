//! `ferrolb`: one binary for the controller, the speaker and the user verbs.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod cli;
mod controller_cmd;
mod inspect;
mod plan;
mod speaker_cmd;
mod validate;

#[derive(Parser)]
#[command(
    name = "ferrolb",
    version,
    about = "Load balancer IPs for bare-metal Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prints the CustomResourceDefinitions as YAML, or writes one file per CRD into --dir.
    Crds {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Converts MetalLB resources (metallb.io) into ferrolb resources (ferrolb.io).
    ///
    /// Reads FILE (or standard input), writes the converted YAML to standard output and names
    /// every field that does not carry over on standard error.
    Migrate {
        /// A YAML file with one or more documents; `-` or nothing reads standard input.
        file: Option<PathBuf>,
    },
    /// Runs the controller: assigns pool addresses to LoadBalancer Services (one leader among
    /// replicas, elected with a Lease).
    Controller(controller_cmd::ControllerArgs),
    /// Runs the speaker on a node: announces the addresses this node should, in L2 and BGP mode.
    Speaker(speaker_cmd::SpeakerArgs),
    /// Shows which addresses the controller would assign, offline, from YAML holding pools
    /// (ferrolb.io or metallb.io), Namespaces and Services.
    Plan {
        /// A YAML file with one or more documents; `-` or nothing reads standard input.
        file: Option<PathBuf>,
        /// Handle only Services with this spec.loadBalancerClass.
        #[arg(long)]
        lb_class: Option<String>,
    },
    /// Every LoadBalancer Service with its addresses, pool, mode and the nodes announcing it
    /// (or why none does), and the BGP sessions per node and peer.
    Status {
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Usage per pool and family: assigned, available, and the Services holding addresses.
    Pools {
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Checks configuration files offline with the controller's and speakers' validation,
    /// conflicts between the files included. Exit code 1 when any error is found.
    Validate {
        /// YAML files with ferrolb.io objects.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Table,
    Json,
    Yaml,
}

/// The cluster flags kubectl users expect.
#[derive(clap::Args)]
struct ClusterArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long)]
    context: Option<String>,
    /// Only Services (and their Events) in this namespace; default: all namespaces.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Where ferrolb runs (its pools, reports and configuration).
    #[arg(long, env = "FERROLB_NAMESPACE", default_value = "ferrolb-system")]
    ferrolb_namespace: String,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

/// Prints `value` as the output format asks, or `table` for tables.
fn print_as<T: serde::Serialize>(
    output: Output,
    value: &T,
    table: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    match output {
        Output::Table => print!("{}", table()),
        Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Output::Yaml => print!("{}", serde_yaml::to_string(value)?),
    }
    Ok(())
}

/// Reads what `status` and `pools` show, with the kubeconfig and context asked for.
fn snapshot(cluster: &ClusterArgs) -> anyhow::Result<inspect::Snapshot> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = cli::client(cluster.kubeconfig.as_deref(), cluster.context.as_deref()).await?;
        inspect::fetch(
            &client,
            &cluster.ferrolb_namespace,
            cluster.namespace.as_deref(),
        )
        .await
    })
}

/// Reads a file, or standard input for `-` or no file.
fn read_input(file: Option<PathBuf>) -> anyhow::Result<String> {
    match file.filter(|f| f.as_os_str() != "-") {
        Some(path) => {
            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
        }
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading standard input")?;
            Ok(s)
        }
    }
}

/// Errors end the process with one line naming what was tried (a file, an address, a flag)
/// and why, without a backtrace: what an operator reads in `kubectl logs`.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrolb: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    // Installed as `kubectl-ferrolb`, kubectl runs it for `kubectl ferrolb ...`.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if invoked_as == "kubectl-ferrolb" && !args.is_empty() {
        args[0] = "kubectl ferrolb".into();
    }
    match Cli::parse_from(args).command {
        Command::Crds { dir: None } => print!("{}", ferrolb_api::crds::all_yaml()),
        Command::Crds { dir: Some(dir) } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for crd in ferrolb_api::crds::all() {
                let path = dir.join(ferrolb_api::crds::file_name(&crd));
                std::fs::write(&path, ferrolb_api::crds::to_yaml(&crd))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Command::Migrate { file } => {
            let migration = ferrolb_api::migrate::migrate(&read_input(file)?)?;
            for note in &migration.notes {
                eprintln!("ferrolb migrate: {note}");
            }
            print!("{}", migration.yaml);
        }
        Command::Controller(args) => controller_cmd::run(args)?,
        Command::Speaker(args) => speaker_cmd::run(args)?,
        Command::Plan { file, lb_class } => {
            print!("{}", plan::plan(&read_input(file)?, lb_class.as_deref())?);
        }
        Command::Status { cluster } => {
            let status = inspect::status(&snapshot(&cluster)?);
            print_as(cluster.output, &status, || inspect::render_status(&status))?;
        }
        Command::Pools { cluster } => {
            let rows = inspect::pools(&snapshot(&cluster)?);
            print_as(cluster.output, &rows, || inspect::render_pools(&rows))?;
        }
        Command::Validate { files, output } => {
            let mut texts = Vec::new();
            for f in &files {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?;
                texts.push((f.display().to_string(), text));
            }
            let findings = validate::validate(&texts)?;
            print_as(output, &findings, || validate::render(&findings))?;
            if findings.iter().any(|f| f.severity == "error") {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
