//! The probe test plugin built a second time, answering `version` with `probe v2`: reload
//! tests install it over `probe` to tell new code from old while state stays in the host.

const VERSION: &str = "probe v2";

include!("../../probe/src/probe.rs");
