//! Load for ANY WebSocket server, not only relays speaking wsrelay's protocol: the `echo`
//! scenario and scripted scenarios from a TOML file (`script`), on their own engine (a mio
//! loop per driver thread, like the relay scenarios) that keeps the swarm's measurement
//! rules: latency from the SCHEDULED send time, exact counts of what is due and received.
//!
//! - `scenario`: the model; `file`: the TOML scenario file; `template`: payload templates;
//!   `threshold`: pass/fail rules.
//! - `conn`: one virtual client; `driver`: a driver thread; `shared`: what drivers share;
//!   `run`: the coordinator.
//! - `args`: the command line of `echo` and `script`.

pub mod args;
pub mod conn;
pub mod driver;
pub mod file;
pub mod run;
pub mod scenario;
pub mod shared;
pub mod template;
pub mod threshold;
