use super::*;
use crate::telemetry::counters::LatencyHistogram;

fn one(name: &'static str, labels: Labels, value: Value) -> Family {
    Family::new(name, "help").with(labels, value)
}

#[test]
fn counters_get_the_prefix_and_total_suffix() {
    let text =
        render_families(vec![one("frontend_connections_accepted", labels([("frontend_id", "7".into()), ("frontend", "web".into())]), Value::Counter(3))]);
    assert!(text.contains("# TYPE lb_frontend_connections_accepted_total counter\n"), "{text}");
    assert!(text.contains("lb_frontend_connections_accepted_total{frontend_id=\"7\",frontend=\"web\"} 3\n"), "{text}");
}

#[test]
fn display_names_are_escaped_in_label_values() {
    let text = render_families(vec![one("farm_servers_up", labels([("farm", "a \"b\"\\c\nd".into())]), Value::Gauge(1.0))]);
    assert!(text.contains(r#"lb_farm_servers_up{farm="a \"b\"\\c\nd"} 1"#), "{text}");
}

#[test]
fn histograms_are_cumulative_with_inf_sum_and_count() {
    let h = LatencyHistogram::default();
    h.observe(std::time::Duration::from_micros(200));
    h.observe(std::time::Duration::from_millis(2));
    let text = render_families(vec![one("server_connect_seconds", labels([("server_id", "1".into())]), Value::Histogram(h.values()))]);
    assert!(text.contains("# TYPE lb_server_connect_seconds histogram\n"), "{text}");
    assert!(text.contains("lb_server_connect_seconds_bucket{server_id=\"1\",le=\"0.0005\"} 1\n"), "{text}");
    assert!(text.contains("lb_server_connect_seconds_bucket{server_id=\"1\",le=\"0.0025\"} 2\n"), "{text}");
    assert!(text.contains("lb_server_connect_seconds_bucket{server_id=\"1\",le=\"+Inf\"} 2\n"), "{text}");
    assert!(text.contains("lb_server_connect_seconds_count{server_id=\"1\"} 2\n"), "{text}");
    assert_eq!(text.matches("le=\"+Inf\"").count(), 1, "{text}");
}

#[test]
fn empty_families_are_left_out_and_no_openmetrics_eof() {
    let text = render_families(vec![Family::new("handoffs", "none yet")]);
    assert!(!text.contains("lb_handoffs"), "{text}");
    assert!(!text.contains("# EOF"), "{text}");
}

#[test]
fn fallback_reasons_become_label_friendly() {
    assert_eq!(reason_label("not quiescent"), "not_quiescent");
    assert_eq!(reason_label("splice map full"), "splice_map_full");
}

#[test]
fn every_kernel_counter_is_a_documented_family() {
    let docs = include_str!("../../../../docs/metrics.md");
    for counter in lb_common::Counter::ALL {
        let exposed = format!("`{PREFIX}_{}_total`", counter.metric());
        assert!(docs.contains(&exposed), "{exposed} is not in docs/metrics.md");
    }
}
