//! Metrics read at scrape time rather than counted: client and server connections, each
//! node's health, role and lag (from the monitor's latest view, not updated per probe), and the
//! classification cache's hits and misses.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::backend::view::NodeView;
use crate::proxy::Proxy;

/// Encodes the scrape-time metrics of one proxy.
pub struct ProxyCollector(pub Arc<Proxy>);

impl std::fmt::Debug for ProxyCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProxyCollector")
    }
}

/// One live node's figures at scrape time.
struct NodeSample {
    name: String,
    view: NodeView,
    up: bool,
    active: usize,
    idle: usize,
}

impl ProxyCollector {
    fn nodes(&self) -> Vec<NodeSample> {
        let proxy = &self.0;
        let members = proxy.cluster.members();
        let view = proxy.cluster.view();
        let idle = proxy.pools.idle_by_node(members.nodes.len());
        members
            .live()
            .map(|n| {
                let node_view = view.nodes.get(n.id).cloned().unwrap_or_default();
                NodeSample {
                    name: n.name.clone(),
                    up: node_view.reachable && n.is_up(),
                    view: node_view,
                    active: n.outstanding(),
                    idle: idle.get(n.id).copied().unwrap_or(0),
                }
            })
            .collect()
    }

    fn encode_clients(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let proxy = &self.0;
        let members = proxy.cluster.members();
        let active: usize = members.nodes.iter().map(|n| n.outstanding()).sum();
        let waiting: usize = members.nodes.iter().map(|n| n.waiting()).sum();
        let open = usize::try_from(proxy.metrics.clients()).unwrap_or(usize::MAX);
        let idle = open.saturating_sub(active + waiting);
        let mut m = encoder.encode_descriptor(
            "client_connections",
            "Client connections by state: active (holding a server connection), waiting (for one), idle",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in [("active", active), ("waiting", waiting), ("idle", idle)] {
            gauge(&mut m, &[("state", state)], n as i64)?;
        }
        Ok(())
    }

    fn encode_nodes(
        &self,
        encoder: &mut DescriptorEncoder,
        nodes: &[NodeSample],
    ) -> Result<(), std::fmt::Error> {
        let mut m = encoder.encode_descriptor(
            "server_connections",
            "Server connections by node and state: active (lent to a client) or idle (pooled)",
            None,
            MetricType::Gauge,
        )?;
        for n in nodes {
            let node = n.name.as_str();
            gauge(
                &mut m,
                &[("node", node), ("state", "active")],
                n.active as i64,
            )?;
            gauge(&mut m, &[("node", node), ("state", "idle")], n.idle as i64)?;
        }
        let mut m = encoder.encode_descriptor(
            "node_up",
            "1 when the node's last probe succeeded and it is not backing off after a failure",
            None,
            MetricType::Gauge,
        )?;
        for n in nodes {
            gauge(&mut m, &[("node", n.name.as_str())], i64::from(n.up))?;
        }
        let mut m = encoder.encode_descriptor(
            "node_role",
            "1 for the role the monitor observed: primary, replica, or unknown (not probed yet)",
            None,
            MetricType::Gauge,
        )?;
        for n in nodes {
            let role = match n.view.in_recovery {
                Some(true) => "replica",
                Some(false) => "primary",
                None => "unknown",
            };
            gauge(&mut m, &[("node", n.name.as_str()), ("role", role)], 1)?;
        }
        self.encode_lag(encoder, nodes)
    }

    fn encode_lag(
        &self,
        encoder: &mut DescriptorEncoder,
        nodes: &[NodeSample],
    ) -> Result<(), std::fmt::Error> {
        let mut m = encoder.encode_descriptor(
            "node_lag_bytes",
            "WAL bytes the replica's replay is behind the primary (0 for the primary)",
            None,
            MetricType::Gauge,
        )?;
        for n in nodes {
            let bytes = i64::try_from(n.view.lag_bytes).unwrap_or(i64::MAX);
            gauge(&mut m, &[("node", n.name.as_str())], bytes)?;
        }
        let mut m = encoder.encode_descriptor(
            "node_lag_seconds",
            "How long ago the primary was where the replica's replay is (0 on an idle cluster)",
            None,
            MetricType::Gauge,
        )?;
        for n in nodes {
            let labels = [("node", n.name.as_str())];
            let e = m.encode_family(&labels)?;
            ConstGauge::new(n.view.lag_time.as_secs_f64()).encode(e)?;
        }
        let mut m = encoder.encode_descriptor(
            "node_lagging",
            "1 while the replica is over the lag limits and takes no reads",
            None,
            MetricType::Gauge,
        )?;
        for n in nodes {
            gauge(
                &mut m,
                &[("node", n.name.as_str())],
                i64::from(n.view.lagging),
            )?;
        }
        Ok(())
    }

    fn encode_cache(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (hits, misses) = self.0.classes.hits_misses();
        for (name, help, value) in [
            (
                "classify_cache_hits",
                "Statement texts whose classification was found in the cache",
                hits,
            ),
            (
                "classify_cache_misses",
                "Statement texts that had to be parsed and classified",
                misses,
            ),
        ] {
            let counter = ConstCounter::new(value);
            let e = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(e)?;
        }
        Ok(())
    }
}

fn gauge(
    m: &mut prometheus_client::encoding::MetricEncoder,
    labels: &[(&str, &str)],
    value: i64,
) -> Result<(), std::fmt::Error> {
    let e = m.encode_family(&labels)?;
    ConstGauge::new(value).encode(e)
}

impl Collector for ProxyCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_clients(&mut encoder)?;
        let nodes = self.nodes();
        self.encode_nodes(&mut encoder, &nodes)?;
        self.encode_cache(&mut encoder)
    }
}
