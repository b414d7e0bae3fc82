//! `tunas`: the search host's command line. Thin: parse, run, map errors to exit codes
//! (0 ok, 1 ran but the result is unusable, 2 error). A closed stdout pipe is not an error.

use clap::Parser;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    host::allocator::keep_freed_memory();
    let cli = host::Cli::parse();
    console::logger::init(cli.log.verbosity());
    match host::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            let broken_pipe = err.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                std::process::exit(0);
            }
            eprintln!("error: {err:#}");
            std::process::exit(2);
        }
    }
}
