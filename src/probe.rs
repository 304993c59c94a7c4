//! Host probes: this host's metrics, announced through gossip: vital signs sampled by the
//! daemon itself (`metrics`) and the perfdata of Nagios plugins it runs on a schedule
//! (`plugins`, defined in the `metrics.probes` folder).

pub mod mac;
pub mod metrics;
pub mod plugins;
pub mod process;
