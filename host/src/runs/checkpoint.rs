//! Checkpoints of a run: named weights, optimiser slots and a JSON state, swapped in by renames
//! so a cut save never leaves a half-written checkpoint.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};

/// A checkpoint: named weights, optimiser slots and a JSON state.
#[derive(Debug)]
pub struct Checkpoint {
    /// Weights by name.
    pub weights: HashMap<String, Tensor>,
    /// Optimiser slots by name.
    pub optimizer: HashMap<String, Tensor>,
    /// The state file's text.
    pub state: String,
    /// Where the state was read from (for error messages).
    pub state_path: PathBuf,
    /// Where the weights were read from (for error messages).
    pub weights_path: PathBuf,
}

/// Saves a checkpoint into `run/checkpoint` through `checkpoint.new` and renames; a crash at
/// any point leaves either the new or the previous checkpoint (`checkpoint.old`) whole.
pub fn save_checkpoint(
    run: &Path,
    weights: &HashMap<String, Tensor>,
    optimizer: &HashMap<String, Tensor>,
    state: &str,
) -> Result<()> {
    let final_dir = run.join("checkpoint");
    let tmp = run.join("checkpoint.new");
    let old = run.join("checkpoint.old");
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir_all(&tmp)?;
    candle_core::safetensors::save(weights, tmp.join("weights.safetensors"))?;
    candle_core::safetensors::save(optimizer, tmp.join("optimizer.safetensors"))?;
    fs::write(tmp.join("state.json"), state)?;
    // On the disk before the renames that make it the checkpoint.
    for name in ["weights.safetensors", "optimizer.safetensors", "state.json"] {
        latency_tables::atomic::sync_file(&tmp.join(name))?;
    }
    latency_tables::atomic::sync_dir(&tmp.join("state.json"))?;
    if final_dir.exists() {
        if old.exists() {
            fs::remove_dir_all(&old)?;
        }
        fs::rename(&final_dir, &old)?;
    }
    fs::rename(&tmp, &final_dir)?;
    latency_tables::atomic::sync_dir(&final_dir)?;
    if old.exists() {
        fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// Loads the checkpoint of `run` (or `checkpoint.old` when a save was cut between its renames).
pub fn load_checkpoint(run: &Path, device: &Device) -> Result<Checkpoint> {
    let mut dir = run.join("checkpoint");
    if !dir.exists() && run.join("checkpoint.old").exists() {
        dir = run.join("checkpoint.old");
    }
    let state_path = dir.join("state.json");
    let state = fs::read_to_string(&state_path)
        .with_context(|| format!("reading {}", state_path.display()))?;
    let weights_path = dir.join("weights.safetensors");
    let weights = candle_core::safetensors::load(&weights_path, device)
        .with_context(|| format!("reading {}", weights_path.display()))?;
    let opath = dir.join("optimizer.safetensors");
    let optimizer = candle_core::safetensors::load(&opath, device)
        .with_context(|| format!("reading {}", opath.display()))?;
    Ok(Checkpoint { weights, optimizer, state, state_path, weights_path })
}

/// Sets every var of `vars` from `weights`; a missing or misshapen weight names the file.
pub fn set_vars(
    vars: &candle_nn::VarMap,
    weights: &HashMap<String, Tensor>,
    file: &Path,
) -> Result<()> {
    let data = vars.data().lock().map_err(|_| anyhow::anyhow!("poisoned var map"))?;
    for (name, var) in data.iter() {
        let t =
            weights.get(name).with_context(|| format!("{}: no weight {name}", file.display()))?;
        var.set(t).with_context(|| format!("{}: weight {name}", file.display()))?;
    }
    Ok(())
}

/// Every var of `vars` by name.
pub fn var_tensors(vars: &candle_nn::VarMap) -> Result<HashMap<String, Tensor>> {
    Ok(vars
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned var map"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect())
}
