//! `wsrelay-swarm`: parse the command line, run the scenario, print the report.

use clap::Parser;
use loadtest::cli::Cli;

fn main() {
    let cli = Cli::parse();
    let json = cli.command.json();
    match loadtest::run::run(cli.command.into_options()) {
        Ok(report) if json => println!("{}", report.to_json()),
        Ok(report) => print!("{}", report.to_text()),
        Err(e) => {
            eprintln!("wsrelay-swarm: {e}");
            std::process::exit(2);
        }
    }
}
