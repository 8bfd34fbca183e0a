//! Config for a pgroute in front of a [`crate::testbed::Cluster`] (used by `pgroute demo` and
//! the end-to-end tests).

use crate::testbed::Cluster;

/// A TOML config: `listen`, one `[[users]]` entry and every node of `cluster` (node 0 as
/// primary). `extra` is appended verbatim (more sections, e.g. `[pool]`).
pub fn config_toml(
    cluster: &Cluster,
    listen: &str,
    user: &str,
    password: &str,
    extra: &str,
) -> String {
    let mut toml = format!(
        "listen = \"{listen}\"\n\n[[users]]\nname = \"{user}\"\npassword = \"{password}\"\n"
    );
    for (i, port) in cluster.node_ports().iter().enumerate() {
        let role = if i == 0 { "primary" } else { "replica" };
        toml.push_str(&format!(
            "\n[[nodes]]\nname = \"node{i}\"\naddr = \"127.0.0.1:{port}\"\nrole = \"{role}\"\n"
        ));
    }
    toml.push('\n');
    toml.push_str(extra);
    toml
}
