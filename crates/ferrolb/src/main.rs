//! `ferrolb`: one binary for the controller, the speaker and the user verbs.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod controller_cmd;
mod plan;
mod speaker_cmd;

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

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
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
            let input = match file.filter(|f| f.as_os_str() != "-") {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?,
                None => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .context("reading standard input")?;
                    s
                }
            };
            let migration = ferrolb_api::migrate::migrate(&input)?;
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
    }
    Ok(())
}
