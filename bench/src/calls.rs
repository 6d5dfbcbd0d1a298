//! Scenario 5: what a plugin call adds per message, measured inside the host: the echo plugin's
//! `on-message` (which sends the message back through the host) against the same send done
//! natively.

use anyhow::Result;

use crate::kit::Kit;

pub fn plugin_call_overhead(kit: &Kit, quick: bool) -> Result<()> {
    let n = if quick { 50_000 } else { 500_000 };
    let costs = wasmsock::plugin::overhead::measure(&kit.plugin("echo"), &kit.work.join("calls"), &[64, 4096], n)?;
    println!("## Plugin call overhead per message (in-process, one core)\n");
    println!("| message | echo plugin `on-message` (wasm call + host send) | same send, native | wasm layer |");
    println!("|---|---|---|---|");
    for c in costs {
        let (wasm, native) = (c.plugin_ns, c.native_ns);
        println!("| {} B text | {wasm:.0} ns | {native:.0} ns | {:.0} ns |", c.size, wasm - native);
    }
    println!();
    Ok(())
}
