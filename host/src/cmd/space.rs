//! `tunas space list` and `tunas space show NAME`.

use clap::Subcommand;

use crate::space::{reference_architectures, space_names, SearchSpace};

/// `tunas space …`
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// List the search spaces with their sizes.
    List,
    /// Show a space: decisions with their choices, its size and reference architectures.
    Show {
        /// The space (`proxylessnas`, `proxylessnas-enlarged`, `mobilenet-v3-like`).
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

impl Cmd {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<i32> {
        use std::io::Write;
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        match self {
            Cmd::List => {
                for name in space_names() {
                    let s = SearchSpace::by_name(name)?;
                    writeln!(
                        out,
                        "{:<24} {:<22} {:>3} decisions  {:>9.2e} architectures  T0 = {} ms",
                        s.name,
                        s.paper_name,
                        s.len(),
                        s.cardinality(),
                        s.default_target_ms
                    )?;
                }
            }
            Cmd::Show { name, json } => {
                let s = SearchSpace::by_name(&name)?;
                let refs = reference_architectures(s.name);
                if json {
                    let decisions: Vec<serde_json::Value> = s
                        .decisions
                        .iter()
                        .enumerate()
                        .map(|(i, d)| {
                            let choices: Vec<String> = (0..d.num_choices()).map(|c| d.label(c)).collect();
                            serde_json::json!({"index": i, "name": d.name, "tag": d.tag(), "choices": choices})
                        })
                        .collect();
                    let refs: Vec<serde_json::Value> = refs
                        .iter()
                        .map(|r| serde_json::json!({"name": r.name, "indices": r.indices, "note": r.note}))
                        .collect();
                    let doc = serde_json::json!({
                        "name": s.name, "reference_name": s.reference_name, "paper_name": s.paper_name,
                        "decisions": decisions, "cardinality": s.cardinality(),
                        "default_target_ms": s.default_target_ms, "reference_architectures": refs,
                    });
                    writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
                    return Ok(0);
                }
                writeln!(
                    out,
                    "{} ({}; reference code: {})",
                    s.name, s.paper_name, s.reference_name
                )?;
                writeln!(out, "{} decisions, {:.2e} architectures (every combination, inactive ones included)", s.len(), s.cardinality())?;
                writeln!(out, "default latency target T0 = {} ms", s.default_target_ms)?;
                writeln!(out)?;
                for (i, d) in s.decisions.iter().enumerate() {
                    let tag = match d.tag() {
                        crate::space::Tag::Op => "op",
                        crate::space::Tag::Filters => "filters",
                    };
                    let choices: Vec<String> =
                        (0..d.num_choices()).map(|c| format!("{c}={}", d.label(c))).collect();
                    writeln!(out, "{i:>3}  {:<40} {tag:<8} {}", d.name, choices.join(" "))?;
                }
                writeln!(out)?;
                if refs.is_empty() {
                    writeln!(out, "reference architectures: none expressible in this space")?;
                } else {
                    writeln!(out, "reference architectures:")?;
                    for r in refs {
                        writeln!(out, "  {:<22} {}", r.name, r.note)?;
                        writeln!(out, "    {}", r.indices)?;
                    }
                }
            }
        }
        Ok(0)
    }
}
