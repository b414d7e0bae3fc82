//! `device-agent info`: the device fingerprint as JSON.

use anyhow::Result;

use crate::placement::{setup, PlacementArgs};

/// Prints the fingerprint of this placement.
pub fn run(p: &PlacementArgs) -> Result<()> {
    let (_, fp) = setup(p)?;
    super::print_json(&fp)
}
