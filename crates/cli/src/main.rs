//! `palisade`: build, serve and manage secure model APIs.
//!
//! `main` only parses arguments, runs the command and maps failures to exit codes; each
//! command lives in its own module.

mod audit;
mod build;
mod certs;
mod cli;
mod endpoint;
mod explainer;
mod failure;
mod home;
mod identity;
mod image;
mod k8s;
mod limits;
mod models;
mod monitoring;
mod output;
mod policy;
mod predict;
mod serve;
mod validate;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{
    AuditCommand, CaCommand, CertCommand, Cli, Command, KeysCommand, ModelsCommand, PolicyCommand, SaCommand,
    TokenCommand,
};
use crate::failure::Failure;

// A request allocates and frees many small buffers on several threads; glibc's malloc
// spent a sixth of the server's CPU on them under load (BENCHMARKS.md). mimalloc is built
// with `no_thp`: with transparent huge pages its arenas took idle RSS from 28 to 46 MB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    palisade_tls::install_default_provider();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { failure::EXIT_USAGE } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            failure.print();
            ExitCode::from(failure.code())
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let home = home::resolve(cli.home.as_deref())?;
    match cli.command {
        Command::Build(args) => build::run(&home, &args),
        Command::Serve(args) => serve::run(&home, *args),
        Command::Predict(args) => predict::run(&home, &args),
        Command::Models { command } => match command {
            ModelsCommand::List(args) => models::list(&home, &args),
            ModelsCommand::Show(args) => models::show(&home, &args),
            ModelsCommand::Delete(args) => models::delete(&home, &args),
            ModelsCommand::Served(args) => models::served(&home, &args),
        },
        Command::Sa { command } => match command {
            SaCommand::Create(args) => identity::sa_create(&home, &args),
            SaCommand::List(args) => identity::sa_list(&home, &args),
            SaCommand::Revoke(args) => identity::sa_revoke(&home, &args),
        },
        Command::Keys { command } => match command {
            KeysCommand::Rotate(args) => identity::keys_rotate(&home, &args),
            KeysCommand::Revoke(args) => identity::keys_revoke(&home, &args),
        },
        Command::Token { command } => match command {
            TokenCommand::Issue(args) => identity::token_issue(&home, &args),
        },
        Command::Validate(args) => validate::run(&args),
        Command::Audit { command } => match command {
            AuditCommand::Verify(args) => audit::verify(&home, &args),
            AuditCommand::Query(args) => audit::query(&home, &args),
            AuditCommand::Tail(args) => audit::tail(&home, &args),
            AuditCommand::Import(args) => audit::import(&args),
            AuditCommand::Seal(args) => audit::seal(&home, &args),
            AuditCommand::Archive(args) => audit::archive::run(&home, &args),
        },
        Command::Ca { command } => match command {
            CaCommand::Init(args) => certs::ca_init(&home, &args),
        },
        Command::Cert { command } => match command {
            CertCommand::Issue(args) => certs::cert_issue(&home, &args),
        },
        Command::Policy { command } => match command {
            PolicyCommand::Apply(args) => policy::apply(&home, &args),
            PolicyCommand::List(args) => policy::list(&home, &args),
            PolicyCommand::Delete(args) => policy::delete(&home, &args),
            PolicyCommand::Explain(args) => policy::explain(&home, &args),
            PolicyCommand::Check(args) => policy::check(&home, &args),
        },
        Command::K8s { command } => k8s::run(&command),
        Command::Operator(args) => k8s::operator(&args),
        Command::Image { command } => image::run(&home, command),
    }
}
