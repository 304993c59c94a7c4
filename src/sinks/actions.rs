//! Running a step of remediation (`[[alerts.actions]]`): a Wake-on-LAN magic packet, or a
//! command with the step's alert on stdin. Run once, with no retry: a step is done whatever
//! came of it (see `alert::action`).

use crate::config::ActionKind;
use crate::events::SinkResult;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// The longest a command of an exec action may run before it is killed (a power cycle
/// through a smart plug, a VM started: seconds to a minute).
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `action` for the step `alert`; `mac` is the subject host's gossiped MAC address and
/// `commands` this node's `[alerts.commands]`. The result reads as a sink's: `ok` or why not.
pub async fn run(
    action: &ActionKind,
    commands: &BTreeMap<String, Vec<String>>,
    alert: &Value,
    mac: Option<&str>,
) -> SinkResult {
    let result = match action {
        ActionKind::Wol { address } => wake(*address, mac).await,
        ActionKind::Exec { command } => exec(command, alert).await,
        ActionKind::Named { name } => match commands.get(name) {
            Some(command) => exec(command, alert).await,
            None => Err(format!(
                "command \"{name}\" is not declared in [alerts.commands]"
            )),
        },
    };
    let result = match result {
        Ok(what) => {
            tracing::info!(id = %super::field(alert, "id"), "remediation ran: {what}");
            SinkResult::OK.to_string()
        }
        Err(why) => why,
    };
    SinkResult {
        sink: action.as_str().to_string(),
        result,
    }
}

async fn exec(command: &[String], alert: &Value) -> Result<String, String> {
    match tokio::time::timeout(EXEC_TIMEOUT, super::exec(command, alert)).await {
        Ok(Ok(())) => Ok(format!("{} exited 0", command[0])),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "{} did not finish within {}",
            command[0],
            humantime::format_duration(EXEC_TIMEOUT)
        )),
    }
}

/// Sends one magic packet for `mac` to `address` (a broadcast address is allowed).
async fn wake(address: SocketAddr, mac: Option<&str>) -> Result<String, String> {
    let mac = mac.ok_or("the host never announced its MAC address")?;
    let bytes = crate::probe::mac::parse(mac)
        .ok_or_else(|| format!("the host announced {mac:?}, not a MAC address"))?;
    let bind: SocketAddr = if address.is_ipv4() {
        "0.0.0.0:0".parse().expect("an address")
    } else {
        "[::]:0".parse().expect("an address")
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    socket
        .set_broadcast(true)
        .map_err(|e| format!("cannot allow broadcast: {e}"))?;
    socket
        .send_to(&crate::probe::mac::magic_packet(bytes), address)
        .await
        .map_err(|e| format!("cannot send the magic packet to {address}: {e}"))?;
    Ok(format!("magic packet for {mac} to {address}"))
}
