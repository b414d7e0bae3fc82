//! `device-agent`: thin main; errors go to stderr with their context, exit code 2.

use clap::Parser;

fn main() {
    let cli = device_agent::Cli::parse();
    console::logger::init(cli.log.verbosity());
    if let Err(err) = device_agent::run(cli) {
        let broken_pipe = err.chain().any(|e| {
            e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
        });
        if broken_pipe {
            std::process::exit(0);
        }
        eprintln!("device-agent: error: {err:#}");
        std::process::exit(2);
    }
}
